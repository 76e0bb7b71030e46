#!/usr/bin/env bash
# The main job: set up .venv, then train + evaluate the representative experiment (collab-bias, full
# preset) on MovieLens-100k and write its report. Extra arguments go to `dldojo run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dldojo run collab-bias --preset full "$@"

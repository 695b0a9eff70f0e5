#!/usr/bin/env bash
# Sets up a development venv (torch pinned to the CPU build) and runs lint + the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch is pinned: an unpinned torch pulls several GB of CUDA packages.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[export,train,dev]'
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"

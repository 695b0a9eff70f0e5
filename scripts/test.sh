#!/usr/bin/env bash
# Sets up a development venv (torch pinned to the CPU build), installs the validators the deploy
# and browser tests use, and runs lint + the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch is pinned: an unpinned torch pulls several GB of CUDA packages.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[export,train,dev,openvino]'
# compose/promtool/k8s-schema validators, Playwright + Debian chromium; tests skip without them.
PYTHON=.venv/bin/python bash .ci/install-deploy-tools.sh \
  || echo "warning: some deploy/browser test tools could not be installed; those tests will skip"
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"

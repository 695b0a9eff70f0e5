#!/usr/bin/env bash
# Builds the serving image from docker/Dockerfile with podman (a debootstrapped Debian base in
# place of python:3.11-slim, no container registry needed), runs it with docker-compose.yml's
# own settings and checks it (readiness, HEALTHCHECK, real photos, hostile uploads, user,
# read-only root, no torch, size, peak memory); then brings the compose stack up (profile
# `scale`: replicas behind nginx, Prometheus) and kills a replica under traffic.
# Root only (podman as root); tools from `.ci/install-deploy-tools.sh`. Figures -> JSON.
#
#   sudo scripts/container-smoke.sh                # image + compose stack (~10 min first time)
#   sudo scripts/container-smoke.sh --image-only   # the image only
#   extra arguments go to pytest, e.g. -k healthcheck
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
tests=(tests/deploy/test_container_image.py tests/deploy/test_compose_stack.py)
if [[ "${1:-}" == "--image-only" ]]; then
  shift
  tests=(tests/deploy/test_container_image.py)
fi
figures=${FCOS_CONTAINER_FIGURES:-runs/container-smoke.json}
mkdir -p "$(dirname "$figures")"
rm -f "$figures"
# a skip (podman missing or unusable) is a failure here
FCOS_CONTAINER_REQUIRED=1 FCOS_CONTAINER_FIGURES="$figures" PYTHONPATH="$PWD" \
  "$PY" -m pytest -v -p no:cacheprovider "${tests[@]}" "$@"
echo "figures ($figures):"
cat "$figures"

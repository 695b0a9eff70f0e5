#!/bin/sh
# Entrypoint of the nginx stand-in image (docker/stand-in/build-images.sh): Debian's nginx in
# place of nginx:*-alpine, run with the repo's docker/nginx.conf as is.
#
# docker/nginx.conf resolves replicas through Docker's embedded DNS at 127.0.0.11. Podman's
# networks answer at the gateway instead (aardvark-dns, listed in /etc/resolv.conf), so where
# 127.0.0.11 is not the container's resolver a cache-less dnsmasq forwards 127.0.0.11:53 to it;
# nginx's re-resolution (valid=5s) then sees replicas come and go exactly as under Docker.
set -eu
if ! grep -q '^nameserver 127\.0\.0\.11$' /etc/resolv.conf; then
  dnsmasq --listen-address=127.0.0.11 --bind-interfaces --port=53 --no-hosts --cache-size=0 \
    --resolv-file=/etc/resolv.conf --user=root --pid-file=/run/dnsmasq.pid
fi
exec "$@"

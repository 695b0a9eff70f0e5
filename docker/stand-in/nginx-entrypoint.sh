#!/bin/sh
# Entrypoint of the nginx stand-in image (docker/stand-in/build-images.sh): Debian's nginx in
# place of nginx:*-alpine, run with the repo's docker/nginx.conf as is.
#
# docker/nginx.conf resolves replicas through Docker's embedded DNS at 127.0.0.11. Podman's
# networks answer at the gateway instead (aardvark-dns, the first nameserver in /etc/resolv.conf),
# so where 127.0.0.11 is not the container's resolver a cache-less dnsmasq forwards 127.0.0.11:53
# to it; nginx's re-resolution (valid=5s) then sees replicas come and go exactly as under Docker.
# Only to it: the lines after it are the host's resolvers, which answer NXDOMAIN for a service
# name, and dnsmasq (without --no-resolv) sends queries to whichever server answered fastest,
# so nginx would drop every replica now and then ("no live upstreams" until the next switch).
# aardvark-dns forwards the names it does not know itself, as Docker's embedded DNS does.
set -eu
if ! grep -q '^nameserver 127\.0\.0\.11$' /etc/resolv.conf; then
  network_dns=""
  while read -r key value _; do
    if [ "$key" = nameserver ]; then network_dns="$value"; break; fi
  done </etc/resolv.conf
  dnsmasq --listen-address=127.0.0.11 --bind-interfaces --port=53 --no-hosts --cache-size=0 \
    --no-resolv --server="$network_dns" --user=root --pid-file=/run/dnsmasq.pid
fi
exec "$@"

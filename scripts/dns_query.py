"""A minimal DNS A query (RFC 1035) for the container tests: ask servers for one name and
report each response code and answer count, as nginx's resolver sees them. Run inside a
container's network namespace (`nsenter --net`) to query the resolver at 127.0.0.11 that
docker/nginx.conf names:

    python scripts/dns_query.py NAME SERVER...  # prints "server rcode answers" per server
"""

from __future__ import annotations

import random
import socket
import struct
import sys


def a_query(server: str, name: str, timeout_s: float = 2.0) -> tuple[int, int]:
    """(rcode, number of answer records) of an A query for `name`; rcode -1 if no reply came."""
    ident = random.randrange(1 << 16)
    packet = struct.pack(">6H", ident, 0x0100, 1, 0, 0, 0)  # recursion desired, one question
    for label in name.rstrip(".").split("."):
        packet += bytes([len(label)]) + label.encode("ascii")
    packet += b"\0" + struct.pack(">2H", 1, 1)  # type A, class IN
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.sendto(packet, (server, 53))
            while True:
                reply = sock.recv(4096)
                if len(reply) >= 12 and struct.unpack(">H", reply[:2])[0] == ident:
                    break
        except OSError:
            return -1, 0
    flags, _, answers = struct.unpack(">3H", reply[2:8])
    return flags & 0xF, answers


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0].startswith("-"):
        print(__doc__)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    name, *servers = argv
    for server in servers:
        print(server, *a_query(server, name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

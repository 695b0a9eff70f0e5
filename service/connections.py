"""Connection-level limits for uvicorn: what nginx does in front of an app, done in-process.

- at most `max_connections` open connections (capped below the open-file limit): one more is
  answered 503 and closed at once, so the process never runs out of file descriptors (where
  asyncio would log a traceback per failed accept, thousands a second);
- `header_timeout_s` to send a complete request line and headers, counted from the
  connection (or from the previous response on a keep-alive connection), so connections
  that never send, or drip their headers, are closed (nginx's `client_header_timeout`);
- header size (`h11_max_incomplete_event_size`) and keep-alive idle time are uvicorn's own
  settings, set from ours in `uvicorn_options`;
- a request h11 cannot parse (e.g. headers over the limit) gets uvicorn's 400 and a lingering
  close, as nginx does: the server half-closes, drops what the client still sends for up to
  `LINGER_S`, then closes. Closing at once with unread bytes makes the kernel send a reset,
  and the client often saw "connection reset" instead of the 400;
- a body drip-fed in tiny pieces (1-byte chunks of a chunked upload, or tiny TCP segments) is
  refused with a JSON 400 and the same lingering close: each piece costs the event loop ~5 us
  in h11 and uvicorn whatever its size (three clients sending 1 MB as 1-byte chunks slowed a
  normal /detect from 0.12 s to 7-9 s). A body may come in `FREE_PIECES` pieces of any size;
  past that they must average `MIN_AVERAGE_PIECE_BYTES` on the wire. TCP segments over a slow
  link carry ~1.4 kB, clients' chunked writes several kB: only a drip-feed is refused. Behind
  nginx (`proxy_request_buffering on`, its default) bodies arrive reassembled.

The body's time limit is the app's (`service.upload`): it answers 408 in the usual JSON shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import Settings

log = logging.getLogger("service.connections")

FD_RESERVE = 64  # model file, ORT, logs, the listening socket, outgoing...
BACKLOG = 128  # pending connections the kernel queues; they can each become an open fd
LINGER_S = 2.0  # after refusing an unparseable request: read and drop the rest this long
_REFUSAL_BODY = b'{"error":{"code":"too_many_connections","message":"too many connections"}}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)
FREE_PIECES = 1024  # body pieces (reads; chunks of a chunked body) allowed at any size
MIN_AVERAGE_PIECE_BYTES = 1024  # past FREE_PIECES, the wire bytes per piece on average


def _drip_refusal(pieces: int) -> bytes:
    message = (f"request body sent in {pieces} pieces averaging under {MIN_AVERAGE_PIECE_BYTES} "
               "bytes; send it in larger chunks")  # fmt: skip
    body = json.dumps({"error": {"code": "bad_request", "message": message}}).encode()
    return (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip


def open_file_limit() -> int:
    """The soft RLIMIT_NOFILE after raising it to the hard limit (as servers do)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_limit(wanted: int, nofile: int) -> int:
    """`wanted`, lowered so that connections + the backlog + a reserve fit in `nofile` fds."""
    return max(1, min(wanted, nofile - BACKLOG - FD_RESERVE))


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a connection cap and a header timeout (class attributes
    set by `protocol_class`)."""

    max_connections = 256
    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _lingering = False  # the request was refused: incoming bytes are dropped until the close
    _pieces = 0  # of the current request's body (see FREE_PIECES)
    _body_bytes = 0
    _chunked = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_REFUSAL)
            transport.close()
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        starting = self.cycle is None or self.cycle.response_complete
        if starting:
            self._arm_header_timer()  # a new request is starting (keep-alive)
        elif self._drip_fed(data):
            return
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._cancel_header_timer()  # the headers are complete: the app takes over
            if starting:
                self._pieces = self._body_bytes = 0
                self._chunked = any(k == b"transfer-encoding" and b"chunked" in v.lower()
                                    for k, v in self.cycle.scope["headers"])  # fmt: skip

    def _drip_fed(self, data: bytes) -> bool:
        """Counts the body's pieces (chunks: two CRLFs each); past the limit, refuses the
        request itself (the app's cycle sees a disconnect) and returns True."""
        self._pieces += max(1, data.count(b"\r\n") // 2) if self._chunked else 1
        self._body_bytes += len(data)
        cycle = self.cycle
        if (self._pieces <= FREE_PIECES or cycle is None or cycle.response_started
                or self._body_bytes >= self._pieces * MIN_AVERAGE_PIECE_BYTES):  # fmt: skip
            return False
        log.info("request refused: body drip-fed in %d pieces of %d bytes", self._pieces,
                 self._body_bytes)  # fmt: skip
        self.transport.write(_drip_refusal(self._pieces))
        cycle.disconnected = True  # the app's receive() answers http.disconnect; its reply is
        cycle.message_event.set()  # dropped (uvicorn sends nothing on a disconnected cycle)
        self._linger()
        return True

    def send_400_response(self, msg: str) -> None:
        """uvicorn's 400 (same bytes), then a lingering close instead of an immediate one."""
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=msg.encode("ascii")), h11.EndOfMessage()):  # fmt: skip
            self.transport.write(self.conn.send(event))
        self._linger()

    def _linger(self) -> None:
        """Half-close now (the client reads the answer, then end of stream), drop what it
        still sends, close after LINGER_S."""
        self._lingering = True
        self._cancel_header_timer()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()


def protocol_class(max_connections: int, header_timeout_s: float) -> type[LimitedH11Protocol]:
    return type(
        "ServiceH11Protocol",
        (LimitedH11Protocol,),
        {"max_connections": max_connections, "header_timeout_s": header_timeout_s},
    )


class RateLimitFilter(logging.Filter):
    """Lets through one record per message text per `interval_s` (e.g. asyncio's accept errors
    when the process is out of file descriptors, which would otherwise flood the log)."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:60]
        now = time.monotonic()
        if now - self._last.get(key, -self.interval_s) < self.interval_s:
            return False
        self._last[key] = now
        return True


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run keyword arguments for the limits in `settings` (and the open-file limit)."""
    nofile = open_file_limit()
    max_conn = connection_limit(settings.max_connections, nofile)
    if max_conn < settings.max_connections:
        log.warning("max_connections lowered to %d to fit the open-file limit (%d)",
                    max_conn, nofile)  # fmt: skip
    logging.getLogger("asyncio").addFilter(RateLimitFilter())
    return {
        "http": protocol_class(max_conn, settings.header_timeout_s),
        "backlog": BACKLOG,
        # uvicorn's request-time check; connections themselves are capped at connect time.
        "limit_concurrency": max_conn + 1,
        "timeout_keep_alive": settings.keepalive_timeout_s,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }

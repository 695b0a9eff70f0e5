"""Per-request context (pure ASGI): X-Request-ID, Server-Timing, in-flight gauge, the
`detector_requests_total` outcome counter and one JSON access-log line per request."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import to_http_error
from service.metrics import Metrics

log = logging.getLogger("service.access")

_DETECT_ROUTES = re.compile(r"^(/detect(/batch)?|/v2/models/[^/]+(/versions/[^/]+)?/infer)$")
QUIET_PREFIXES = ("/health/", "/metrics")  # logged at DEBUG only
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
SERVER_TIMING_ORDER = (
    "read", "queue", "decode", "preprocess", "inference", "postprocess", "annotate",
)  # fmt: skip


def request_id_from(headers: Headers) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh one."""
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def server_timing(timings_s: dict[str, float], total_s: float) -> str:
    parts = [
        f"{stage};dur={1000.0 * timings_s[stage]:.2f}"
        for stage in SERVER_TIMING_ORDER
        if stage in timings_s
    ]
    parts.append(f"total;dur={1000.0 * timings_s.get('total', total_s):.2f}")
    return ", ".join(parts)


def outcome_for(status: int) -> str:
    return {
        200: "ok", 400: "bad_request", 413: "too_large", 415: "unsupported_media_type",
        422: "invalid_parameter", 503: "overloaded", 504: "timeout",
    }.get(status, "bad_request" if 400 <= status < 500 else "error")  # fmt: skip


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        rid = request_id_from(Headers(scope=scope))
        state.update(request_id=rid, started_monotonic=time.monotonic(), timings_s={})
        is_detect = scope["method"] == "POST" and bool(_DETECT_ROUTES.match(scope["path"]))
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                state["response_started"] = True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = rid
                headers["Server-Timing"] = server_timing(
                    state["timings_s"], time.perf_counter() - start
                )
            await send(message)

        if is_detect:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # a bug, not bad input: still answer in the error shape
            err = to_http_error(exc)
            log.error("unhandled error", exc_info=exc, extra={"request_id": rid})
            state["outcome"] = err.outcome
            if not state.get("response_started"):
                await err.response()(scope, receive, send_with_headers)
        finally:
            if is_detect:
                self.metrics.in_flight.dec()
                self.metrics.requests.labels(
                    outcome=state.get("outcome") or outcome_for(status)
                ).inc()
            self._log(scope, state, status, time.perf_counter() - start)

    def _log(self, scope: Scope, state: dict[str, Any], status: int, total_s: float) -> None:
        path: str = scope["path"]
        level = logging.DEBUG if path.startswith(QUIET_PREFIXES) else logging.INFO
        if not log.isEnabledFor(level):
            return
        timings = {k: round(1000.0 * v, 2) for k, v in state["timings_s"].items()}
        timings.setdefault("total", round(1000.0 * total_s, 2))
        fields: dict[str, Any] = {
            "request_id": state["request_id"], "method": scope["method"], "path": path,
            "status": status, "timings_ms": timings,
        }  # fmt: skip
        for key in ("outcome", "request_bytes", "image_width", "image_height", "detections"):
            if key in state:
                fields[key] = state[key]
        log.log(level, "request", extra=fields)

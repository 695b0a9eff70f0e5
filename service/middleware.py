"""Per-request context (pure ASGI): X-Request-ID, Server-Timing, in-flight gauge, the
`detector_requests_total` outcome counter and one JSON access-log line per request; also
the header size limit (431) and the JSON 503 for requests cancelled at shutdown."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import (
    HeadersTooLargeError,
    ShuttingDownError,
    outcome_for,
    to_http_error,
)
from service.metrics import Metrics
from service.stages import STAGES

log = logging.getLogger("service.access")

# path -> the `route` label of detector_requests_total (service.metrics.ROUTES)
_DETECT_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/detect$"), "detect"),
    (re.compile(r"^/detect/batch$"), "batch"),
    (re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$"), "v2"),
    (re.compile(r"^/v1/vision/(detection|custom/[^/]+)$"), "deepstack"),
)


def detect_route(method: str, path: str) -> str | None:
    """The route label of a detection request; None for every other request."""
    if method != "POST":
        return None
    return next((name for pattern, name in _DETECT_ROUTES if pattern.match(path)), None)
QUIET_PREFIXES = ("/health/", "/metrics")  # logged at DEBUG only
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def header_bytes(scope: Scope) -> int:
    """Size of the request line and headers as sent (give or take the line ends)."""
    line = len(scope["method"]) + len(scope.get("raw_path") or b"") + len(scope["query_string"])
    return line + sum(len(k) + len(v) + 4 for k, v in scope["headers"])


def _header_limit(scope: Scope) -> int | None:
    app = scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    return getattr(settings, "max_header_bytes", None)


def request_id_from(headers: Headers) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh one."""
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def server_timing(timings_s: dict[str, float], total_s: float) -> str:
    parts = [
        f"{stage};dur={1000.0 * timings_s[stage]:.2f}"
        for stage in STAGES
        if stage in timings_s and stage != "total"
    ]
    parts.append(f"total;dur={1000.0 * timings_s.get('total', total_s):.2f}")
    return ", ".join(parts)


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
        route = detect_route(scope["method"], scope["path"])
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

        if route is not None:
            self.metrics.in_flight.inc()
        limit = _header_limit(scope)
        try:
            if limit is not None and header_bytes(scope) > limit:
                # uvicorn (h11) refuses headers over the limit only while they are incomplete
                err = to_http_error(HeadersTooLargeError(
                    f"request headers are larger than {limit} bytes",
                    headers={"Connection": "close"}))  # fmt: skip
                state["outcome"] = err.outcome
                await err.response()(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:
            # uvicorn cancels what is still running when DETECTOR_GRACEFUL_TIMEOUT_S is over:
            # answer in the error shape (503) instead of uvicorn's plain-text 500 + traceback.
            state["outcome"] = ShuttingDownError.outcome
            if state.get("response_started"):
                raise
            log.warning("request cancelled: server shutting down", extra={"request_id": rid})
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):  # Python >= 3.11
                task.uncancel()
            err = ShuttingDownError("server shutting down; retry on another instance",
                                    headers={"Connection": "close"})  # fmt: skip
            await to_http_error(err).response()(scope, receive, send_with_headers)
        except Exception as exc:  # a bug, not bad input: still answer in the error shape
            err = to_http_error(exc)
            log.error("unhandled error", exc_info=exc, extra={"request_id": rid})
            state["outcome"] = err.outcome
            if not state.get("response_started"):
                await err.response()(scope, receive, send_with_headers)
        finally:
            if route is not None:
                self.metrics.in_flight.dec()
                # "model" is set once the route has resolved a model of the repository
                self.metrics.requests.labels(
                    model=state.get("model", ""), route=route,
                    outcome=state.get("outcome") or outcome_for(status),
                ).inc()  # fmt: skip
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
        for key in ("model", "outcome", "request_bytes", "image_width", "image_height",
                    "detections"):  # fmt: skip
            if key in state:
                fields[key] = state[key]
        log.log(level, "request", extra=fields)

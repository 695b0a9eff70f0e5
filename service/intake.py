"""How a detection request's body comes in: the one path for POST /detect, POST /detect/batch
and POST /v2/models/{name}/infer (the hardened path, whatever the route or body form).

1. At arrival: refused at once when the model is not ready or the queue is already full
   (`Engine.check_capacity`, takes nothing).
2. The body is read under the upload memory budget (DETECTOR_MAX_UPLOAD_MEMORY_BYTES, 503) and
   must be complete before its deadline (DETECTOR_BODY_TIMEOUT_S: 408; the request's own
   deadline, DETECTOR_REQUEST_TIMEOUT_S or `timeout_ms`, when earlier: 504 as in any stage).
   The route's reader parses it off the event loop (multipart with a part limit, JSON, the
   inference protocol's tensors).
3. Only then a queue slot is taken (`Engine.admit`): slow or stalled uploads never hold one.
   The body stays counted in the budget until the request is done.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from starlette.requests import Request

from service.engine import Engine
from service.errors import DeadlineExceededError, RequestTimeoutError
from service.metrics import Metrics
from service.upload import BudgetHold
from service.worker import Reservation

T = TypeVar("T")
# (request, body deadline (time.monotonic()) or None, budget hold) -> (parsed body, body bytes)
Reader = Callable[[Request, float | None, BudgetHold], Awaitable[tuple[T, int]]]


def deadline_after(request: Request, *budgets_s: float | None) -> float | None:
    """The earliest of the budgets (seconds from arrival; None or 0 = none), or None."""
    given = [b for b in budgets_s if b]
    if not given:
        return None
    started: float = request.state.started_monotonic
    return started + min(given)


def min_deadline(*deadlines: float | None) -> float | None:
    given = [d for d in deadlines if d is not None]
    return min(given) if given else None


def request_deadline(request: Request, engine: Engine, timeout_s: float | None) -> float | None:
    """Arrival to result: DETECTOR_REQUEST_TIMEOUT_S or the request's own timeout (504)."""
    return deadline_after(request, engine.settings.request_timeout_s, timeout_s)


@asynccontextmanager
async def received(
    request: Request, engine: Engine, read: Reader[T], timeout_s: float | None = None
) -> AsyncIterator[tuple[T, Reservation]]:
    """(parsed body, queue slot): steps 1-3 above; `timeout_s` is the request's own deadline.
    Records the `read` stage, the body size and `detector_request_size_bytes`."""
    settings = engine.settings
    engine.check_capacity()
    own = deadline_after(request, settings.body_timeout_s)
    whole = request_deadline(request, engine, timeout_s)
    with engine.upload_budget.hold() as hold:
        t0 = time.perf_counter()
        try:
            value, n_bytes = await read(request, min_deadline(own, whole), hold)
        except RequestTimeoutError as exc:
            if whole is not None and (own is None or whole < own):  # the request's deadline
                raise DeadlineExceededError(
                    "deadline exceeded while the body was arriving", headers=dict(exc.headers)
                ) from None
            raise
        request.state.timings_s["read"] = time.perf_counter() - t0
        request.state.request_bytes = n_bytes
        metrics: Metrics = request.app.state.metrics
        metrics.request_size.observe(n_bytes)
        with engine.admit() as slot:  # a queue slot only once the body is complete
            yield value, slot

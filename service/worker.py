"""A few dedicated inference threads behind a bounded waiting queue, with per-request deadlines.

`workers` threads each run one request's whole pipeline (decode, resize, model, NMS); the
runtimes release the GIL, so on a 2-core machine two workers keep both cores busy where one left
a core idle during every decode and NMS (bench/RESULTS.md). With several workers the pool holds
one thread more, used only by a model whose runtime queues calls beyond its streams itself
(OpenVINO): one more request then decodes and letterboxes while every stream computes
(`export.runtime.ImageDetector.pipelines`); a job's `limit` keeps any other model at `workers`.
A job goes to the thread that went idle last (`service.thread_pool`), so a lone stream of
requests stays on one warm thread. The event loop only awaits futures and stays responsive. A
request that finds every worker busy and `max_queue` requests already waiting is refused at once
(503 + Retry-After) instead of queueing without bound; one whose deadline passes gets 504 (if it
was still waiting, it is dropped from the queue; if it was already running, its result is
discarded). A request is refused at arrival when the queue is already full (`check`, costs
nothing), but its slot is taken only once its body is complete (`admit`), so slow or stalled
uploads never hold one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from service.errors import DeadlineExceededError, OverloadedError
from service.thread_pool import LifoThreadPool

T = TypeVar("T")


class InferenceWorker:
    def __init__(
        self,
        max_queue: int,
        retry_after_s: int = 1,
        on_depth: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> None:
        self.max_queue = max_queue
        self.workers = workers
        self.retry_after_s = retry_after_s
        self._on_depth = on_depth or (lambda _depth: None)
        self.threads = workers + 1 if workers > 1 else 1  # the spare: see the module doc
        self._executor = LifoThreadPool(self.threads, thread_name_prefix="inference")
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = 0

    @property
    def depth(self) -> int:
        """Requests admitted and not started yet (waiting for the worker)."""
        return self._waiting

    def _change(self, waiting: int = 0, running: int = 0) -> None:
        with self._lock:  # the gauge is updated under the lock so it is never stale
            self._waiting += waiting
            self._running += running
            self._on_depth(self._waiting)

    def _refuse_if_full(self) -> None:
        # room for `workers` running and `max_queue` waiting
        if self._waiting + self._running >= self.max_queue + self.workers:
            raise OverloadedError(
                f"server busy: {self._waiting} requests already waiting; retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            )

    def check(self) -> None:
        """OverloadedError if `admit` would refuse now (takes nothing)."""
        with self._lock:
            self._refuse_if_full()

    def admit(self) -> Reservation:
        """Take a waiting slot now (the body is complete) or raise OverloadedError."""
        with self._lock:
            self._refuse_if_full()
            self._waiting += 1
            self._on_depth(self._waiting)
        return Reservation(self)

    async def run(
        self,
        fn: Callable[[], T],
        deadline: float | None = None,
        slot: Reservation | None = None,
        key: str = "",
        limit: int | None = None,
    ) -> tuple[T, float]:
        """Run `fn` on the worker; returns (result, seconds spent waiting for the worker).

        `slot` is a reservation from `admit()` (taken here if not given). `deadline` is a
        `time.monotonic()` instant. Raises OverloadedError when the queue is full and
        DeadlineExceededError when the deadline passes first. Waiting jobs of different `key`s
        (models) take turns; at most `limit` jobs of a key run at once (default: `workers`).
        """
        slot = slot if slot is not None else self.admit()
        submitted = time.perf_counter()
        waited: list[float] = []

        def job() -> T:
            slot.start()
            try:
                waited.append(time.perf_counter() - submitted)
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceededError("deadline exceeded while waiting in the queue")
                return fn()
            finally:
                self._change(running=-1)

        cfut: Future[T] = self._executor.submit_as(key, job, limit or self.workers)
        afut = asyncio.wrap_future(cfut)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            result = await asyncio.wait_for(asyncio.shield(afut), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if cfut.cancel():  # never started: it will not run, so release its queue slot here
                slot.release()
            else:
                afut.add_done_callback(_consume)  # keep asyncio quiet about the lost result
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise DeadlineExceededError("deadline exceeded before the result was ready") from None
        return result, (waited[0] if waited else 0.0)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on a worker thread outside the request queue (model loading)."""
        return await asyncio.wrap_future(self._executor.submit(fn))

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)


class Reservation:
    """A waiting slot in the queue: becomes the running slot when its job starts, or is
    released (body unreadable, deadline passed while waiting). Releasing twice is harmless."""

    def __init__(self, worker: InferenceWorker) -> None:
        self._worker = worker
        self._held = True
        self._lock = threading.Lock()

    def _take(self) -> bool:
        with self._lock:
            held, self._held = self._held, False
        return held

    def start(self) -> None:
        if self._take():
            self._worker._change(waiting=-1, running=1)
        else:
            self._worker._change(running=1)

    def release(self) -> None:
        if self._take():
            self._worker._change(waiting=-1)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _consume(fut: asyncio.Future[object]) -> None:
    if not fut.cancelled():
        fut.exception()

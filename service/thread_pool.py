"""A fixed pool of threads that hands each job to the thread that went idle last.

`concurrent.futures.ThreadPoolExecutor` parks idle threads on one shared queue, and the OS wakes
them in turn, so sequential requests alternate between the inference threads: each model run
then starts on a thread (and often a core) whose caches and runtime state the previous run did
not warm. Measured with the service on 2 cores and one client (`python -m bench.throughput
--no-hog`, 5 rounds): 2 workers 20.9 ms p50 against 18.4 ms for 1 worker, same settings
otherwise. Here idle threads form a stack: a lone stream of requests keeps running on one thread,
and concurrent ones still get every thread.

Jobs carry a key (the model's name): waiting jobs of different keys take turns (round robin),
jobs of one key run in arrival order, so a burst for one model delays another model's next job
by at most one job per busy key. A key may also carry a limit: at most that many of its jobs run
at once, whatever the number of threads (a model whose runtime gains nothing from one more).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


class LifoThreadPool:
    """`submit` / `shutdown` like ThreadPoolExecutor (futures can be cancelled until they start)."""

    def __init__(self, workers: int, thread_name_prefix: str = "pool") -> None:
        # key -> its waiting jobs; the dict's order is the turn order (a served key goes last)
        self._jobs: dict[str, deque[tuple[Future[Any], Callable[[], Any]]]] = {}
        self._running: dict[str, int] = {}  # key -> its jobs running now
        self._limits: dict[str, int] = {}  # key -> the most of its jobs that may run at once
        self._idle: list[threading.Event] = []  # the wake-up events of idle threads, a stack
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"{thread_name_prefix}_{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self.submit_as("", partial(fn, *args, **kwargs))

    def submit_as(self, key: str, fn: Callable[[], T], limit: int | None = None) -> Future[T]:
        """`submit` with a key: waiting jobs of different keys take turns. `limit`: at most
        this many jobs of `key` run at once (it stays the key's limit until the next submit
        that gives one; None: no limit but the threads)."""
        fut: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if limit is not None:
                self._limits[key] = max(1, limit)
            elif key in self._limits:
                del self._limits[key]
            self._jobs.setdefault(key, deque()).append((fut, fn))
            if self._idle and self._runnable(key):
                self._idle.pop().set()  # the most recently idle thread
        return fut

    def _loop(self) -> None:
        wake = threading.Event()
        key = None  # the key of the job this thread last ran
        while True:
            with self._lock:
                if key is not None:
                    self._finished(key)
                    key = None
                job = self._next()
                if job is not None:
                    key, fut, fn = job
                    if self._idle and any(map(self._runnable, self._jobs)):
                        self._idle.pop().set()  # a job its limit held back may start now
                elif self._closed and not self._jobs:
                    for other in self._idle:  # threads waiting for a job held by a limit
                        other.set()
                    self._idle.clear()
                    return
                else:
                    wake.clear()
                    self._idle.append(wake)
            if key is None:
                wake.wait()
                continue
            if not fut.set_running_or_notify_cancel():
                continue  # cancelled while waiting
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, as ThreadPoolExecutor does
                fut.set_exception(exc)
            else:
                fut.set_result(result)

    def _runnable(self, key: str) -> bool:
        """Whether a job of `key` may start now (under lock)."""
        limit = self._limits.get(key)
        return limit is None or self._running.get(key, 0) < limit

    def _finished(self, key: str) -> None:
        """A job of `key` has ended (under lock)."""
        left = self._running[key] - 1
        if left:
            self._running[key] = left
        else:
            del self._running[key]

    def _next(self) -> tuple[str, Future[Any], Callable[[], Any]] | None:
        """The first job of the first key in turn order that is under its limit; that key
        goes to the back; it counts as running from here (under lock). None: nothing may
        start now."""
        key = next((k for k in self._jobs if self._runnable(k)), None)
        if key is None:
            return None
        queue = self._jobs.pop(key)
        fut, fn = queue.popleft()
        if queue:
            self._jobs[key] = queue
        self._running[key] = self._running.get(key, 0) + 1
        return key, fut, fn

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """No new jobs; queued ones still run unless `cancel_futures`; threads exit when done."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                for queue in self._jobs.values():
                    for fut, _ in queue:
                        fut.cancel()
                self._jobs.clear()
            for wake in self._idle:
                wake.set()
            self._idle.clear()
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

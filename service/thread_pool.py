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
by at most one job per busy key.
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

    def submit_as(self, key: str, fn: Callable[[], T]) -> Future[T]:
        """`submit` with a key: waiting jobs of different keys take turns."""
        fut: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.setdefault(key, deque()).append((fut, fn))
            if self._idle:
                self._idle.pop().set()  # the most recently idle thread
        return fut

    def _loop(self) -> None:
        wake = threading.Event()
        while True:
            with self._lock:
                if self._jobs:
                    fut, fn = self._next()
                elif self._closed:
                    return
                else:
                    wake.clear()
                    self._idle.append(wake)
                    fut = None
            if fut is None:
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

    def _next(self) -> tuple[Future[Any], Callable[[], Any]]:
        """The first job of the key whose turn it is; that key goes to the back (under lock)."""
        key = next(iter(self._jobs))
        queue = self._jobs.pop(key)
        job = queue.popleft()
        if queue:
            self._jobs[key] = queue
        return job

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

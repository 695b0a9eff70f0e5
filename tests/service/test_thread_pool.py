"""LifoThreadPool: jobs go to the thread that went idle last; futures, cancel, shutdown."""

from __future__ import annotations

import threading

import pytest

from service.thread_pool import LifoThreadPool
from tests import wait_until


def wait_idle(pool: LifoThreadPool, n: int) -> None:
    wait_until(lambda: len(pool._idle) >= n, interval_s=0.001, what="threads did not go idle")


def test_sequential_jobs_stay_on_the_thread_that_went_idle_last() -> None:
    pool = LifoThreadPool(3, thread_name_prefix="t")
    try:
        names = []
        for _ in range(20):
            wait_idle(pool, 3)
            names.append(pool.submit(lambda: threading.current_thread().name).result(10))
        assert len(set(names)) == 1  # a ThreadPoolExecutor would rotate through all three
        assert names[0].startswith("t_")
    finally:
        pool.shutdown()


def test_concurrent_jobs_use_every_thread() -> None:
    pool = LifoThreadPool(3)
    barrier = threading.Barrier(3, timeout=10)

    def job() -> str:
        barrier.wait()  # only returns when three threads run jobs at once
        return threading.current_thread().name

    try:
        futures = [pool.submit(job) for _ in range(3)]
        assert len({f.result(10) for f in futures}) == 3
    finally:
        pool.shutdown()


def test_results_exceptions_and_arguments() -> None:
    pool = LifoThreadPool(2)
    try:
        assert pool.submit(pow, 2, exp=10).result(10) == 1024
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(10)
    finally:
        pool.shutdown()


def test_a_waiting_job_can_be_cancelled_and_shutdown_cancels_the_queue() -> None:
    pool = LifoThreadPool(1)
    started, gate = threading.Event(), threading.Event()

    def block() -> bool:
        started.set()
        return gate.wait(10)

    running = pool.submit(block)
    assert started.wait(10)
    waiting, cancelled = pool.submit(lambda: "ran"), pool.submit(lambda: "ran")
    assert not running.cancel() and cancelled.cancel()
    gate.set()
    assert running.result(10) is True and waiting.result(10) == "ran"
    assert cancelled.cancelled()
    started.clear()
    gate.clear()
    blocker = pool.submit(block)
    assert started.wait(10)
    queued = pool.submit(lambda: "ran")
    threading.Timer(0.05, gate.set).start()
    pool.shutdown(wait=True, cancel_futures=True)  # the running job finishes, the queued not
    assert blocker.result(0) is True and queued.cancelled()
    assert not any(t.is_alive() for t in pool._threads)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_waiting_jobs_of_different_keys_take_turns() -> None:
    pool = LifoThreadPool(1)
    gate = threading.Event()
    order: list[str] = []
    try:
        running = threading.Event()
        blocker = pool.submit_as("a", lambda: (running.set(), gate.wait()))  # the only thread
        assert running.wait(timeout=10)
        jobs = [pool.submit_as(key, lambda key=key: order.append(key))
                for key in ("a", "a", "a", "b", "b", "c")]  # fmt: skip
        gate.set()
        blocker.result(timeout=10)
        for job in jobs:
            job.result(timeout=10)
    finally:
        pool.shutdown()
    # a burst of "a" does not hold back "b" and "c": one job per key in turn
    assert order == ["a", "b", "c", "a", "b", "a"]
    # a key that was just served goes behind the keys that were waiting
    pool = LifoThreadPool(1)
    try:
        gate.clear()
        running.clear()
        order.clear()
        first = pool.submit_as("a", lambda: (running.set(), gate.wait()))
        assert running.wait(timeout=10)
        blocker = pool.submit_as("a", gate.wait)
        jobs = [pool.submit_as(k, lambda k=k: order.append(k)) for k in ("a", "b")]
        gate.set()
        for job in (first, blocker, *jobs):
            job.result(timeout=10)
    finally:
        pool.shutdown()
    assert order == ["b", "a"]


def test_a_key_limit_caps_its_running_jobs_and_leaves_the_spare_threads_to_others() -> None:
    pool = LifoThreadPool(3)
    running: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}
    lock, gate = threading.Lock(), threading.Event()

    def job(key: str) -> str:
        with lock:
            running[key] += 1
            peak[key] = max(peak[key], running[key])
        gate.wait(10)
        with lock:
            running[key] -= 1
        return key

    try:
        a = [pool.submit_as("a", lambda: job("a"), limit=2) for _ in range(4)]
        wait_until(lambda: running["a"] == 2, interval_s=0.001, what="a did not start")
        b = pool.submit_as("b", lambda: job("b"))  # the third thread is free for another key
        wait_until(lambda: running["b"] == 1, interval_s=0.001, what="b did not start")
        assert running["a"] == 2 and not any(f.done() for f in a)
        gate.set()
        assert [f.result(10) for f in a] == ["a"] * 4 and b.result(10) == "b"
        assert peak == {"a": 2, "b": 1}
    finally:
        pool.shutdown()


def test_shutdown_waits_for_jobs_held_back_by_their_limit() -> None:
    pool = LifoThreadPool(3)
    gate = threading.Event()
    futures = [pool.submit_as("k", lambda: gate.wait(10), limit=1) for _ in range(3)]
    threading.Timer(0.05, gate.set).start()
    pool.shutdown(wait=True)  # returns once the three ran one after the other
    assert all(f.result(0) is True for f in futures)
    assert not any(t.is_alive() for t in pool._threads)

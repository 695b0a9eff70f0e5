"""SpinPolicy: spin while runs keep their best time per shape, stop when a neighbour slows
them, probe now and then to come back."""

from __future__ import annotations

import threading

from export.spin_policy import SpinPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(policy: SpinPolicy, key: object, seconds: float) -> bool:
    spun = policy.spin()
    policy.record(key, spun, seconds)
    return spun


def test_quiet_runs_keep_spinning() -> None:
    p = SpinPolicy()
    for s in [0.013, 0.012, 0.0135, 0.014, 0.0125] * 20:  # within 1.17x of the best
        assert run(p, "a", s)
    assert p.spinning and p.switches == 0


def test_a_few_slow_runs_do_not_switch_but_a_slow_median_does() -> None:
    p = SpinPolicy(window=5)
    for s in [0.012, 0.012, 0.012, 0.030, 0.012, 0.030, 0.012]:  # 2 slow of the last 5
        assert run(p, "a", s)
    assert p.spinning
    assert run(p, "a", 0.030)  # 3 of the last 5: the median is slow
    assert not p.spinning and p.switches == 1
    assert not p.spin()  # calm until the next probe is due


def slowed(clock: Clock) -> SpinPolicy:
    p = SpinPolicy(window=3, probe_every_s=2.0, probe_runs=3, clock=clock)
    for s in [0.010, 0.025, 0.025, 0.025]:
        run(p, "a", s)
    assert not p.spinning
    return p


def test_a_probe_is_a_few_spinning_runs_judged_by_the_fastest() -> None:
    clock = Clock()
    p = slowed(clock)
    clock.now += 1.0
    assert not run(p, "a", 0.0)  # calm runs are not recorded
    clock.now += 1.5
    assert [run(p, "a", s) for s in (0.030, 0.024, 0.020)] == [True] * 3  # a slow probe
    assert not p.spinning
    assert not p.spin()  # the next probe is 2 s after the last one began
    clock.now += 2.0
    assert [run(p, "a", s) for s in (0.019, 0.0105, 0.013)] == [True] * 3  # cold, then quiet
    assert p.spinning and p.switches == 2
    assert run(p, "a", 0.011)


def test_only_the_probe_runs_spin_while_calm() -> None:
    clock = Clock()
    p = slowed(clock)
    clock.now += 2.0
    assert [p.spin() for _ in range(5)] == [True, True, True, False, False]


def test_each_shape_has_its_own_best() -> None:
    p = SpinPolicy()
    for _ in range(10):  # a big shape is 2x a small one: not a neighbour
        run(p, (1, 3, 288, 384), 0.012)
        run(p, (1, 3, 384, 384), 0.024)
    assert p.spinning and p.switches == 0
    for _ in range(5):
        run(p, (1, 3, 288, 384), 0.020)
    assert not p.spinning


def test_the_first_run_of_a_shape_is_its_best_until_a_faster_one() -> None:
    p = SpinPolicy()
    run(p, "a", 0.050)  # a slow first run (arena growth) sets the best for now
    for _ in range(5):
        run(p, "a", 0.012)  # faster: becomes the best
    for _ in range(5):
        run(p, "a", 0.030)
    assert not p.spinning


def test_threads_share_one_policy() -> None:
    p = SpinPolicy()

    def worker() -> None:
        for _ in range(500):
            run(p, "a", 0.012)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.spinning and p.switches == 0

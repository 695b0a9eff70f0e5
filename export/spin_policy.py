"""When ONNX Runtime's intra-op threads should busy-wait (spin) between the parallel parts of a
run: only while nothing else wants the cores.

Spinning makes a lone 2-thread run of the bundled INT8 model ~7% faster on an idle machine (the
pool threads pick up each op's work without a wake-up), but beside a process that keeps one core
busy it took 1.65x its quiet time against 1.41x without spinning (a spinning thread burns the
timeslices its partner needs; `python -m bench.spinning`). `SpinPolicy` watches the model runs
themselves: it spins while runs take about their best time for their input shape, stops spinning
when the median of the recent ones takes `slow_ratio` times that, and while not spinning lets a
few runs in a row spin every `probe_every_s` (a probe) and spins again when the fastest of them
is back near its best. The probe is judged by its fastest run because its first run is slow
anyway (the spinning session's threads and buffers went cold while the other session ran).
Measured: bench/RESULTS.md. Pure logic, no ONNX Runtime.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

SLOW_RATIO = 1.3  # recent spinning runs this much slower than their best: a neighbour
QUIET_RATIO = 1.15  # a probe this close to its best: the neighbour has gone
WINDOW = 5  # spinning runs whose median decides (quiet runs have bursts of 1.6x too)
PROBE_EVERY_S = 2.0  # while not spinning, a probe this often ...
PROBE_RUNS = 3  # ... of this many spinning runs in a row

log = logging.getLogger("export.spin_policy")


class SpinPolicy:
    """Thread-safe. Ask `spin()` before a run, then `record(key, spun, seconds)` after it;
    `key` is the run's input shape (each shape has its own best time)."""

    def __init__(
        self,
        slow_ratio: float = SLOW_RATIO,
        quiet_ratio: float = QUIET_RATIO,
        window: int = WINDOW,
        probe_every_s: float = PROBE_EVERY_S,
        probe_runs: int = PROBE_RUNS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slow_ratio, self.quiet_ratio = slow_ratio, quiet_ratio
        self.probe_every_s, self.probe_runs, self.clock = probe_every_s, probe_runs, clock
        self.spinning = True  # the mode: spin unless a neighbour was seen
        self.switches = 0  # mode changes so far (spinning -> not and back)
        self._best: dict[Hashable, float] = {}  # key -> fastest spinning run, seconds
        self._recent: deque[float] = deque(maxlen=window)  # spinning runs' ratios to best
        self._next_probe = 0.0
        self._probe_granted = 0  # spinning runs of the current probe handed out by spin()
        self._probe: list[float] = []  # and their ratios to best, as recorded
        self._lock = threading.Lock()

    def spin(self) -> bool:
        """Whether the next run should spin (in the quiet mode, or as a due probe)."""
        with self._lock:
            if self.spinning:
                return True
            if 0 < self._probe_granted < self.probe_runs:  # a probe under way
                self._probe_granted += 1
                return True
            now = self.clock()
            if now < self._next_probe:
                return False
            self._next_probe = now + self.probe_every_s
            self._probe_granted, self._probe = 1, []
            return True

    def record(self, key: Hashable, spun: bool, seconds: float) -> None:
        """A run of input shape `key` took `seconds`, spinning or not."""
        if not spun:
            return  # runs without spinning say nothing about what spinning would cost
        with self._lock:
            best = self._best.get(key)
            if best is None or seconds < best:
                self._best[key] = best = seconds
            ratio = seconds / best
            if self.spinning:
                self._recent.append(ratio)
                full = len(self._recent) == self._recent.maxlen
                median = statistics.median(self._recent) if full else 1.0
                if median > self.slow_ratio:
                    self.spinning = False
                    self.switches += 1
                    self._next_probe = self.clock() + self.probe_every_s
                    self._probe_granted = 0
                    log.info("model runs stop spinning: the last %d took %.2fx their best",
                             len(self._recent), median)  # fmt: skip
                return
            self._probe.append(ratio)
            if len(self._probe) < self.probe_runs:
                return
            fastest, self._probe_granted = min(self._probe), 0
            if fastest <= self.quiet_ratio:  # the probe ran at its quiet speed
                self.spinning = True
                self.switches += 1
                self._recent.clear()
                log.info("model runs spin again: a probe's fastest run took %.2fx its best",
                         fastest)  # fmt: skip

"""Round trips of status calls, each with the wall-clock time it started, and the stretch of time they count in."""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field

from bench.stats import percentile


@dataclass(frozen=True)
class Window:
    """A stretch of wall-clock time (time.time()), such as a job's start and end as the daemon reports them."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def holds(self, started: float, seconds: float) -> bool:
        return self.start <= started and started + seconds <= self.end


@dataclass
class LatencySamples:
    started: array[float] = field(default_factory=lambda: array("d"))
    seconds: array[float] = field(default_factory=lambda: array("d"))

    def add(self, started: float, seconds: float) -> None:
        self.started.append(started)
        self.seconds.append(seconds)

    def extend(self, other: LatencySamples) -> None:
        self.started.extend(other.started)
        self.seconds.extend(other.seconds)

    def within(self, window: Window) -> LatencySamples:
        """The calls that started and ended inside the window."""
        kept = LatencySamples()
        for started, seconds in zip(self.started, self.seconds):
            if window.holds(started, seconds):
                kept.add(started, seconds)
        return kept

    @property
    def count(self) -> int:
        return len(self.seconds)

    @property
    def p50(self) -> float:
        return percentile(self.seconds, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.seconds, 0.99)

    @property
    def worst(self) -> float:
        return max(self.seconds, default=float("nan"))


@dataclass
class LoadSamples:
    """Calls answered over windows of known length, for a rate of calls per second."""

    samples: LatencySamples = field(default_factory=LatencySamples)
    seconds: float = 0.0

    def add(self, samples: LatencySamples, window: Window) -> None:
        self.samples.extend(samples.within(window))
        self.seconds += window.seconds

    @property
    def calls_per_second(self) -> float:
        return self.samples.count / self.seconds if self.seconds > 0 else float("nan")


def wall_clock_offset() -> float:
    """What to add to time.perf_counter() for time.time(): precise durations placed on the daemon's clock."""
    return time.time() - time.perf_counter()

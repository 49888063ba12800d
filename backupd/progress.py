"""Percent and ETA of a job against an expected total, given only once they mean something."""

from __future__ import annotations

from dataclasses import dataclass

# Before this long, or this share of the work, a rate says nothing about the rest: early reads
# of cached or small files would promise days or seconds.
ETA_AFTER_SECONDS = 3.0
ETA_AFTER_FRACTION = 0.02


@dataclass(frozen=True)
class Estimate:
    percent: float | None = None
    eta: float | None = None
    more_than_expected: bool = False

    def to_wire(self) -> dict[str, object]:
        return {"percent": self.percent, "eta": self.eta, "more_than_expected": self.more_than_expected}


def estimate(done: int, expected: int | None, elapsed: float, finished: bool = False) -> Estimate:
    """Where done stands against expected after elapsed seconds. Work that is not finished
    stays below 100 %; work beyond what was expected has no percent and says so."""
    if finished:
        return Estimate(percent=100.0, eta=0.0)
    if not expected or done <= 0:
        return Estimate()
    if done >= expected:
        return Estimate(more_than_expected=done > expected)
    fraction = done / expected
    eta = None
    if elapsed >= ETA_AFTER_SECONDS and fraction >= ETA_AFTER_FRACTION:
        eta = round(elapsed * (1 - fraction) / fraction, 1)
    return Estimate(percent=min(round(fraction * 100, 1), 99.9), eta=eta)

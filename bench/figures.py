"""One measured figure: the daemon's value, the reference it is set against, the ratio and the budget, if any."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

MIB = 1024 * 1024
NOT_APPLICABLE = "—"


class Unit(StrEnum):
    """What a value counts; latencies are kept in seconds and shown in milliseconds."""

    SECONDS = "seconds"
    LATENCY_SECONDS = "latency_seconds"
    CALLS_PER_SECOND = "calls_per_second"
    BYTES = "bytes"
    CLOCK_TICKS = "clock_ticks"

    def show(self, value: float) -> str:
        if not math.isfinite(value):
            return "n/a"
        if self is Unit.SECONDS:
            return f"{value:.3f} s"
        if self is Unit.LATENCY_SECONDS:
            return f"{value * 1000:.2f} ms"
        if self is Unit.CALLS_PER_SECOND:
            return f"{value:,.0f}/s"
        if self is Unit.BYTES:
            return f"{value / MIB:.1f} MiB"
        return f"{value:.0f} ticks"


class Limit(StrEnum):
    RATIO_AT_MOST = "ratio_at_most"
    AT_MOST = "at_most"
    AT_LEAST = "at_least"


@dataclass(frozen=True)
class Budget:
    """DESIGN section 8: a ceiling on the ratio to the reference, or a ceiling or floor on the value itself."""

    limit: Limit
    bound: float

    def holds(self, value: float, ratio: float | None) -> bool:
        if self.limit is Limit.RATIO_AT_MOST:
            return ratio is not None and math.isfinite(ratio) and ratio <= self.bound
        if not math.isfinite(value):
            return False
        return value <= self.bound if self.limit is Limit.AT_MOST else value >= self.bound

    def show(self, unit: Unit) -> str:
        if self.limit is Limit.RATIO_AT_MOST:
            return f"<= {self.bound:.2f} x"
        if unit is Unit.CLOCK_TICKS:
            return f"<= {self.bound:.0f} tick"
        sign = "<=" if self.limit is Limit.AT_MOST else ">="
        if unit is Unit.LATENCY_SECONDS:
            return f"{sign} {self.bound * 1000:g} ms"
        return f"{sign} {unit.show(self.bound)}"


@dataclass(frozen=True)
class Figure:
    key: str
    name: str
    unit: Unit
    daemon: float
    reference: float | None = None
    reference_name: str | None = None
    budget: Budget | None = None
    # Figures from pairs: the median of the per-pair ratios, so that drift between pairs cancels out.
    ratio_of_pairs: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.ratio_of_pairs is not None:
            return self.ratio_of_pairs
        if self.reference is None or not self.reference:
            return None
        return self.daemon / self.reference

    @property
    def within_budget(self) -> bool | None:
        return None if self.budget is None else self.budget.holds(self.daemon, self.ratio)

    def cells(self) -> list[str]:
        """figure | daemon | reference | ratio | budget | within budget"""
        reference = NOT_APPLICABLE
        if self.reference is not None:
            reference = f"{self.unit.show(self.reference)} ({self.reference_name})"
        ratio = self.ratio
        ratio_digits = 3 if self.budget is not None and self.budget.limit is Limit.RATIO_AT_MOST else 2
        within = self.within_budget
        return [
            self.name,
            self.unit.show(self.daemon),
            reference,
            NOT_APPLICABLE if ratio is None else f"{ratio:.{ratio_digits}f} x",
            NOT_APPLICABLE if self.budget is None else self.budget.show(self.unit),
            NOT_APPLICABLE if within is None else ("yes" if within else "no"),
        ]

    def document(self) -> dict[str, object]:
        return {
            "key": self.key, "figure": self.name, "unit": str(self.unit),
            "daemon": _number(self.daemon),
            "reference": None if self.reference is None else _number(self.reference),
            "reference_name": self.reference_name,
            "ratio": None if self.ratio is None else _number(self.ratio),
            "budget": None if self.budget is None else {"limit": str(self.budget.limit), "bound": self.budget.bound,
                                                         "shown": self.budget.show(self.unit)},
            "within_budget": self.within_budget,
            "shown": dict(zip(("figure", "daemon", "reference", "ratio", "budget", "within_budget"), self.cells())),
        }


def _number(value: float) -> float | None:
    """JSON has no NaN: a figure that could not be measured is null."""
    return value if math.isfinite(value) else None

"""Schedule arithmetic: parsing a schedule and finding its next run in local wall time.

A schedule is "manual" (no automatic runs), "hourly", "daily [HH:MM]",
"weekly [DAY] [HH:MM]", or a 5-field cron expression (minute hour day-of-month month
day-of-week, with lists, ranges, steps and names; day-of-month and day-of-week both
restricted means either may match, as in cron).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

DEFAULT_TIME_OF_DAY = (3, 0)
DEFAULT_WEEKDAY = "mon"
_SEARCH_LIMIT = timedelta(days=366 * 5)

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
# 29 February comes round in leap years.
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ScheduleError(ValueError):
    """The schedule text cannot be understood; the message says why."""


@dataclass(frozen=True)
class CronFields:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        day_ok = day.day in self.days
        weekday_ok = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


@dataclass(frozen=True)
class Schedule:
    text: str
    cron: CronFields | None

    @property
    def automatic(self) -> bool:
        return self.cron is not None


def parse_schedule(text: str) -> Schedule:
    words = text.strip().lower().split()
    if not words:
        raise ScheduleError("The schedule is empty")
    kind = words[0]
    if kind == "manual" and len(words) == 1:
        return Schedule(text, None)
    if kind == "hourly" and len(words) == 1:
        return Schedule(text, _cron("0 * * * *"))
    if kind == "daily" and len(words) <= 2:
        hour, minute = _time_of_day(words[1:])
        return Schedule(text, _cron(f"{minute} {hour} * * *"))
    if kind == "weekly" and len(words) <= 3:
        day = DEFAULT_WEEKDAY
        rest = words[1:]
        if rest and not any(character.isdigit() for character in rest[0]):
            day, rest = _weekday(rest[0]), rest[1:]
        hour, minute = _time_of_day(rest)
        return Schedule(text, _cron(f"{minute} {hour} * * {day}"))
    if len(words) == 5:
        cron = _cron(" ".join(words))
        _check_a_day_exists(cron, text)
        return Schedule(text, cron)
    raise ScheduleError(
        f"{text!r} is not a schedule: use manual, hourly, daily [HH:MM], weekly [DAY] [HH:MM] "
        "or a 5-field cron expression"
    )


def _weekday(word: str) -> str:
    """A day of the week, by its name or its first three letters or more."""
    for index, name in enumerate(_WEEKDAY_NAMES):
        if len(word) >= 3 and name.startswith(word):
            return _WEEKDAYS[index]
    raise ScheduleError(f"{word!r} is not a day of the week: use one of {', '.join(_WEEKDAY_NAMES)} (or mon, tue, ...)")


def _check_a_day_exists(cron: CronFields, text: str) -> None:
    """Refuse days of the month that none of the months has (30 February): such a schedule never runs.
    Days of the week always come round, so a schedule that names them runs."""
    if not cron.days_restricted or cron.weekdays_restricted:
        return
    if any(day <= _LONGEST_MONTH[month - 1] for month in cron.months for day in cron.days):
        return
    raise ScheduleError(f"{text.strip()!r} never runs: no month it names has day {_days_text(cron.days)}")


def _days_text(days: frozenset[int]) -> str:
    return " or ".join(str(day) for day in sorted(days))


def _time_of_day(words: list[str]) -> tuple[int, int]:
    if not words:
        return DEFAULT_TIME_OF_DAY
    match = _TIME_OF_DAY.match(words[0])
    if len(words) != 1 or not match:
        raise ScheduleError(f"{' '.join(words)!r} is not a time of day (HH:MM)")
    return int(match.group(1)), int(match.group(2))


def _cron(expression: str) -> CronFields:
    minute, hour, day, month, weekday = expression.split()
    weekdays = _field(weekday, 0, 7, "day of week", _WEEKDAYS)
    return CronFields(
        minutes=_field(minute, 0, 59, "minute"),
        hours=_field(hour, 0, 23, "hour"),
        days=_field(day, 1, 31, "day of month"),
        months=_field(month, 1, 12, "month", _MONTHS, first=1),
        weekdays=frozenset(value % 7 for value in weekdays),
        days_restricted=not day.startswith("*"),
        weekdays_restricted=not weekday.startswith("*"),
    )


def _field(text: str, low: int, high: int, name: str, names: tuple[str, ...] = (), first: int = 0) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        range_text, _, step_text = part.partition("/")
        step = _number(step_text, name, names, first) if step_text else 1
        if range_text == "*":
            start, end = low, high
        elif "-" in range_text:
            start_text, end_text = range_text.split("-", 1)
            start, end = _number(start_text, name, names, first), _number(end_text, name, names, first)
        else:
            start = _number(range_text, name, names, first)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end or step < 1:
            raise ScheduleError(f"{part!r} is out of range for the {name} ({low}-{high})")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _number(text: str, name: str, names: tuple[str, ...], first: int) -> int:
    if text.isdigit():
        return int(text)
    if text[:3] in names and len(text) >= 3:
        return names.index(text[:3]) + first
    raise ScheduleError(f"{text!r} is not a valid {name}")


def next_run(schedule: Schedule, after: float, zone: tzinfo) -> float | None:
    """The first run strictly after `after` (Unix time), in the wall time of `zone`."""
    cron = schedule.cron
    if cron is None:
        return None
    start = datetime.fromtimestamp(after, zone).replace(tzinfo=None, second=0, microsecond=0)
    candidate = start + timedelta(minutes=1)
    limit = start + _SEARCH_LIMIT
    while candidate <= limit:
        if not cron.matches_day(candidate):
            candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
        elif candidate.hour not in cron.hours:
            candidate = (candidate + timedelta(hours=1)).replace(minute=0)
        elif candidate.minute not in cron.minutes:
            candidate += timedelta(minutes=1)
        else:
            when = _wall_to_timestamp(candidate, zone)
            if when > after:
                return when
            candidate += timedelta(minutes=1)
    return None


def _wall_to_timestamp(wall: datetime, zone: tzinfo) -> float:
    """A wall time that a DST change skips runs at the same distance after the change;
    one that happens twice runs at its first occurrence."""
    return wall.replace(tzinfo=zone, fold=0).timestamp()


def interval(schedule: Schedule, around: float, zone: tzinfo) -> float | None:
    """The usual time between two runs, measured at the next two runs after `around`."""
    first = next_run(schedule, around, zone)
    if first is None:
        return None
    second = next_run(schedule, first, zone)
    return None if second is None else second - first

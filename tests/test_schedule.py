from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from backupd.schedule import ScheduleError, interval, next_run, parse_schedule

LISBON = ZoneInfo("Europe/Lisbon")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str, zone=LISBON) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def local(timestamp: float, zone=LISBON) -> str:
    return datetime.fromtimestamp(timestamp, zone).isoformat()


def runs(schedule: str, start: str, count: int, zone=LISBON) -> list[str]:
    parsed = parse_schedule(schedule)
    when = at(start, zone)
    result = []
    for _ in range(count):
        when = next_run(parsed, when, zone)
        result.append(local(when, zone))
    return result


def test_hourly_runs_on_the_hour():
    assert runs("hourly", "2026-06-01T10:15:30", 3) == [
        "2026-06-01T11:00:00+01:00", "2026-06-01T12:00:00+01:00", "2026-06-01T13:00:00+01:00"]


def test_next_run_is_strictly_after():
    assert runs("hourly", "2026-06-01T11:00:00", 1) == ["2026-06-01T12:00:00+01:00"]


def test_daily_default_and_chosen_time():
    assert runs("daily", "2026-06-01T10:00", 2) == ["2026-06-02T03:00:00+01:00", "2026-06-03T03:00:00+01:00"]
    assert runs("daily 23:45", "2026-06-01T10:00", 1) == ["2026-06-01T23:45:00+01:00"]


def test_weekly_default_monday_and_chosen_day():
    assert runs("weekly", "2026-06-03T10:00", 1) == ["2026-06-08T03:00:00+01:00"]
    assert runs("weekly sunday 04:30", "2026-06-03T10:00", 1) == ["2026-06-07T04:30:00+01:00"]
    assert runs("weekly 05:00", "2026-06-08T04:00", 1) == ["2026-06-08T05:00:00+01:00"]


def test_cron_lists_ranges_steps_and_names():
    assert runs("*/20 9-10 * * mon-fri", "2026-06-05T10:50", 3) == [
        "2026-06-08T09:00:00+01:00", "2026-06-08T09:20:00+01:00", "2026-06-08T09:40:00+01:00"]
    assert runs("0 12 1 jan,jul *", "2026-02-01T00:00", 2) == [
        "2026-07-01T12:00:00+01:00", "2027-01-01T12:00:00+00:00"]


def test_cron_day_of_month_or_day_of_week_when_both_are_set():
    assert runs("0 0 13 * 5", "2026-02-01T00:00", 3) == [
        "2026-02-06T00:00:00+00:00", "2026-02-13T00:00:00+00:00", "2026-02-20T00:00:00+00:00"]


def test_month_ends_and_leap_days():
    assert runs("0 0 31 * *", "2026-04-01T00:00", 2) == ["2026-05-31T00:00:00+01:00", "2026-07-31T00:00:00+01:00"]
    assert runs("0 0 29 2 *", "2026-01-01T00:00", 1) == ["2028-02-29T00:00:00+00:00"]
    assert runs("30 23 28-31 * *", "2026-02-27T00:00", 2) == [
        "2026-02-28T23:30:00+00:00", "2026-03-28T23:30:00+00:00"]


def test_spring_forward_runs_the_skipped_time_once_after_the_change():
    assert runs("30 1 * * *", "2026-03-28T12:00", 2) == ["2026-03-29T02:30:00+01:00", "2026-03-30T01:30:00+01:00"]
    hourly = runs("hourly", "2026-03-29T00:30", 3)
    assert hourly == ["2026-03-29T02:00:00+01:00", "2026-03-29T03:00:00+01:00", "2026-03-29T04:00:00+01:00"]


def test_fall_back_runs_a_repeated_time_once():
    daily = runs("30 1 * * *", "2026-11-01T00:00", 2, NEW_YORK)
    assert daily == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    parsed = parse_schedule("hourly")
    start = at("2026-11-01T00:30", NEW_YORK)
    times = [start]
    for _ in range(4):
        times.append(next_run(parsed, times[-1], NEW_YORK))
    gaps = {b - a for a, b in zip(times[1:], times[2:])}
    assert all(gap > 0 for gap in gaps) and max(gaps) <= 7200


def test_manual_never_runs():
    schedule = parse_schedule("manual")
    assert not schedule.automatic and next_run(schedule, at("2026-01-01T00:00"), LISBON) is None


def test_interval():
    assert interval(parse_schedule("hourly"), at("2026-06-01T00:00"), LISBON) == 3600
    assert interval(parse_schedule("weekly"), at("2026-06-01T00:00"), LISBON) == 7 * 86400
    assert interval(parse_schedule("*/15 * * * *"), at("2026-06-01T00:00"), LISBON) == 900
    assert interval(parse_schedule("manual"), at("2026-06-01T00:00"), LISBON) is None


@pytest.mark.parametrize("text", ["", "often", "daily 25:00", "daily 3pm", "weekly funday", "hourly 10:00",
                                  "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
                                  "5-1 * * * *", "*/0 * * * *", "* * * *", "x * * * *", "manual now"])
def test_bad_schedules(text):
    with pytest.raises(ScheduleError):
        parse_schedule(text)


@pytest.mark.parametrize("text", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "15 3 30-31 feb *"])
def test_a_schedule_that_never_runs_is_refused(text):
    with pytest.raises(ScheduleError, match="never runs"):
        parse_schedule(text)


@pytest.mark.parametrize("text", ["0 0 29 2 *", "0 0 30 2 mon", "0 0 31 * *"])
def test_a_schedule_that_runs_rarely_is_kept(text):
    assert runs(text, "2026-01-01T00:00", 1)


def test_a_wrong_day_of_the_week_is_named_as_such():
    with pytest.raises(ScheduleError, match="'funday' is not a day of the week"):
        parse_schedule("weekly Funday")
    with pytest.raises(ScheduleError, match="'25:00' is not a time of day"):
        parse_schedule("weekly 25:00")
    assert runs("weekly Thursday 04:30", "2026-06-01T00:00", 1) == ["2026-06-04T04:30:00+01:00"]

"""Timetables with fixed clocks: cron in a time zone across both DST changes, six fields, nicknames,
intervals, and the latest slot due (what a scheduler fires after an outage)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobwire.timetable import Timetable, TimetableInvalid, expand, zone

BERLIN = ZoneInfo("Europe/Berlin")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def slots(tt: Timetable, after: datetime, n: int) -> list[datetime]:
    out: list[datetime] = []
    for _ in range(n):
        nxt = tt.next_after(after)
        assert nxt is not None
        out.append(nxt)
        after = nxt
    return out


def local(ts: list[datetime]) -> list[str]:
    return [t.astimezone(BERLIN).strftime("%m-%d %H:%M%z") for t in ts]


def test_spring_forward_a_skipped_local_time_does_not_fire() -> None:
    # 2026-03-29 in Berlin: 02:00 CET becomes 03:00 CEST, so 02:30 does not exist that day
    tt = Timetable.of("30 2 * * *", "Europe/Berlin", None, None)
    assert local(slots(tt, utc(2026, 3, 27, 12), 3)) == [
        "03-28 02:30+0100",
        "03-30 02:30+0200",
        "03-31 02:30+0200",
    ]
    # every 30 minutes across the change: 01:30 CET then 03:00 CEST, an hour of absolute time
    every = Timetable.of("*/30 * * * *", "Europe/Berlin", None, None)
    got = slots(every, utc(2026, 3, 29, 0, 15), 3)  # 01:15 CET
    assert local(got) == ["03-29 01:30+0100", "03-29 03:00+0200", "03-29 03:30+0200"]
    assert got[1] - got[0] == timedelta(minutes=30)


def test_fall_back_a_repeated_local_time_fires_once() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST becomes 02:00 CET, so 02:00-02:59 happen twice
    tt = Timetable.of("30 2 * * *", "Europe/Berlin", None, None)
    assert local(slots(tt, utc(2026, 10, 24, 12), 3)) == [
        "10-25 02:30+0200",
        "10-26 02:30+0100",
        "10-27 02:30+0100",
    ]
    every = Timetable.of("0,30 * * * *", "Europe/Berlin", None, None)
    got = slots(every, utc(2026, 10, 24, 23, 45), 5)  # 01:45 CEST
    assert local(got) == [
        "10-25 02:00+0200",
        "10-25 02:30+0200",
        # the second pass of 02:00-02:59 (CET) fires nothing: those local times fired already
        "10-25 03:00+0100",
        "10-25 03:30+0100",
        "10-25 04:00+0100",
    ]
    # asked from inside the second pass, the next slot is after it, never a repeat
    assert tt.next_after(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)


def test_latest_slot_due_across_the_repeated_hour() -> None:
    every = Timetable.of("0,30 * * * *", "Europe/Berlin", None, None)
    # in the first pass (02:45 CEST), in the second pass (02:15 CET), and after it (03:05 CET)
    assert every.latest_at_or_before(utc(2026, 10, 25, 0, 45)) == utc(2026, 10, 25, 0, 30)
    assert every.latest_at_or_before(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 25, 0, 30)
    assert every.latest_at_or_before(utc(2026, 10, 25, 2, 5)) == utc(2026, 10, 25, 2, 0)
    # a slot at exactly t is due at t
    assert every.latest_at_or_before(utc(2026, 10, 25, 2, 0)) == utc(2026, 10, 25, 2, 0)
    spring = Timetable.of("30 2 * * *", "Europe/Berlin", None, None)
    assert spring.latest_at_or_before(utc(2026, 3, 29, 12)) == utc(2026, 3, 28, 1, 30)


def test_six_fields_have_seconds_first_and_nicknames_work() -> None:
    tt = Timetable.of("*/15 * * * * *", "UTC", None, None)
    assert slots(tt, utc(2026, 1, 1, 0, 0, 1), 3) == [
        utc(2026, 1, 1, 0, 0, 15),
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 0, 45),
    ]
    daily = Timetable.of("@daily", "Europe/Berlin", None, None)
    assert daily.next_after(utc(2026, 6, 1, 12)) == utc(2026, 6, 1, 22)  # midnight CEST
    assert Timetable.of("@hourly", "UTC", None, None).next_after(utc(2026, 1, 1, 0, 30)) == utc(2026, 1, 1, 1)


def test_intervals_count_from_their_anchor() -> None:
    anchor = utc(2026, 1, 1)
    tt = Timetable.of(None, "UTC", 1.5, anchor)
    assert tt.next_after(utc(2026, 1, 1, 0, 0, 3)) == anchor + timedelta(seconds=4.5)
    assert tt.latest_at_or_before(utc(2026, 1, 1, 0, 0, 3)) == anchor + timedelta(seconds=3)
    # after an hour down, the latest slot is one slot, not the 2400 missed
    assert tt.latest_at_or_before(utc(2026, 1, 1, 1, 0, 0, 700000)) == utc(2026, 1, 1, 1)


@pytest.mark.parametrize(
    "cron",
    ["", "* * *", "61 * * * *", "* * * * * * *", "0 0 31 2 *", "@reboot", "0 0 * * 8", "every day"],
)
def test_bad_cron_is_refused(cron: str) -> None:
    with pytest.raises(TimetableInvalid):
        expand(cron)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "", "CEST", "utc+2", "localtime"])
def test_bad_zones_are_refused(name: str) -> None:
    with pytest.raises(TimetableInvalid):
        zone(name)

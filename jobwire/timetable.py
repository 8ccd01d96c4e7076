"""A schedule's timetable: the instants its slots fall on, from a cron expression in a time zone or
from a fixed interval. Pure functions of their arguments (no clock is read here), so the scheduler
and the tests give them the time.

Cron expressions are parsed and walked by `cronsim` (5 fields, or 6 with seconds first), over the
zone's local wall-clock time. A local time is then placed on the time line as cron does it: a
local time that does not exist (the hour skipped when clocks spring forward) does not fire, and one
that occurs twice (the hour repeated when they fall back) fires once, at its first occurrence.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache

from cronsim import CronSim, CronSimError

# the nicknames cron itself knows, as the expressions they stand for (@reboot has no time)
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
ONE_SECOND = timedelta(seconds=1)


class TimetableInvalid(ValueError):
    """A cron expression or time zone that cannot make a timetable; the message says why."""


# files of some tz databases that are no zone of IANA's: the host's own zone, and a POSIX default
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _zone_names() -> frozenset[str]:
    return (frozenset(zoneinfo.available_timezones()) - _NOT_ZONES) | {"UTC"}


def zone(name: str) -> tzinfo:
    """The IANA time zone `name` (e.g. Europe/Berlin); TimetableInvalid for anything else (a file
    path, a POSIX TZ string, an abbreviation such as CET that is not a zone name)."""
    if name not in _zone_names():
        raise TimetableInvalid(f"{name!r} is not an IANA time zone name (such as UTC or Europe/Berlin)")
    return UTC if name == "UTC" else zoneinfo.ZoneInfo(name)


def expand(cron: str) -> str:
    """The expression with a nickname (@daily, …) replaced by its fields; TimetableInvalid unless it
    is 5 fields, or 6 with seconds first, that match at least once in the next 50 years."""
    text = " ".join(cron.split())
    fields = ALIASES.get(text.lower(), text)
    if len(fields.split()) not in (5, 6):
        raise TimetableInvalid(
            f"{cron!r} is not a cron expression: give 5 fields (minute hour day month weekday), "
            "6 with seconds first, or one of " + ", ".join(ALIASES)
        )
    try:
        next(CronSim(fields, datetime(2000, 1, 1)))
    except CronSimError as exc:
        raise TimetableInvalid(f"{cron!r} is not a valid cron expression: {exc}") from None
    except StopIteration:
        raise TimetableInvalid(f"{cron!r} never matches a date") from None
    return fields


@dataclass(frozen=True, slots=True)
class Timetable:
    """Either `cron` (in `tz`) or `interval` (from `anchor`)."""

    cron: str | None = None
    tz: tzinfo = UTC
    interval: timedelta | None = None
    anchor: datetime | None = None

    @classmethod
    def of(
        cls, cron: str | None, timezone: str, interval_s: float | None, anchor: datetime | None
    ) -> Timetable:
        if cron is not None:
            return cls(cron=expand(cron), tz=zone(timezone))
        if interval_s is None or anchor is None:
            raise TimetableInvalid("a timetable needs a cron expression, or an interval and its start")
        return cls(interval=timedelta(seconds=interval_s), anchor=anchor)

    def next_after(self, t: datetime) -> datetime | None:
        """The first slot strictly after `t` (None: the expression never matches again)."""
        if self.interval is not None:
            return self._interval_slot(t, 1)
        assert self.cron is not None
        # walk local wall-clock times from t's; in the second pass of a repeated hour, the first
        # local times met map to the first pass, which is before t, and are passed over
        local = _naive_local(t, self.tz, first_pass=False)
        for candidate in CronSim(self.cron, local.replace(microsecond=0)):
            instant = _instant(candidate, self.tz)
            if instant is not None and instant > t:
                return instant
        return None  # pragma: no cover - cronsim stops after 50 years without a match

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        """The last slot at or before `t` (None: none in the last 50 years)."""
        if self.interval is not None:
            return self._interval_slot(t, 0)
        assert self.cron is not None
        # from the latest local time that may still be at or before t: in the second pass of a
        # repeated hour that is the end of the first pass, whose local times are all behind t
        local = _naive_local(t, self.tz, first_pass=True).replace(microsecond=0) + ONE_SECOND
        for candidate in CronSim(self.cron, local, reverse=True):
            instant = _instant(candidate, self.tz)
            if instant is not None and instant <= t:
                return instant
        return None

    def _interval_slot(self, t: datetime, ahead: int) -> datetime:
        assert self.interval is not None and self.anchor is not None
        if t < self.anchor:
            return self.anchor if ahead else self.anchor - self.interval
        n = (t - self.anchor) // self.interval
        return self.anchor + self.interval * (n + ahead)


def _naive_local(t: datetime, tz: tzinfo, *, first_pass: bool) -> datetime:
    """`t` as a local wall-clock time without its zone. With `first_pass`, an instant in the second
    pass of a repeated hour reads as if the clocks had not gone back yet (the larger offset)."""
    local = t.astimezone(tz)
    if first_pass and local.fold:
        offset = local.replace(fold=0).utcoffset()
        assert offset is not None
        return (t.astimezone(UTC) + offset).replace(tzinfo=None)
    return local.replace(tzinfo=None)


def _instant(local: datetime, tz: tzinfo) -> datetime | None:
    """The instant of a local wall-clock time: its first occurrence, or None when the clocks skip it."""
    first = local.replace(tzinfo=tz, fold=0)
    # a skipped time does not survive the round trip through UTC: it comes back an hour off
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != local:
        return None
    return first.astimezone(UTC)

"""Responders and rosters: pure rules, no I/O.

Rosters are weekly shift templates in the park's own time zone, with leave
and extra dated shifts; time on a template is a minute of the local week
(Monday 00:00 = 0). An overnight shift ends the next day, and a Sunday night
shift ends on the Monday of the next week: both are split where the week
wraps, so every interval is a plain [start, end) inside one week. The hours
of the week a responder's template touches (``duty_hours``) are what the
store indexes, so "who is on duty at T" is a lookup of one hour bucket.
"""
import math
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from lamplight.shapes import Config, Doc

RESPONDER_KINDS = ("volunteer", "unit")
UNIT_KINDS = ("department", "community", "park")
# Wuhan's four colour teams; parks may define more.
COLOUR_TEAMS = ("green", "blue", "red", "orange")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEK_MINUTES = 7 * 24 * 60


# time ---------------------------------------------------------------------------------
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_hhmm(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def minute_of_week(at: datetime, tz: tzinfo) -> int:
    local = at.astimezone(tz)
    return local.weekday() * 1440 + local.hour * 60 + local.minute


def shift_intervals(shift: Doc) -> list[tuple[int, int]]:
    """[(start, end)] minutes of the week, split where the week wraps."""
    start = WEEKDAYS.index(shift["day"]) * 1440 + parse_hhmm(shift["start"])
    end_clock = parse_hhmm(shift["end"])
    length = end_clock - parse_hhmm(shift["start"]) + (1440 if shift.get("overnight") else 0)
    end = start + length
    if end <= WEEK_MINUTES:
        return [(start, end)]
    return [(start, WEEK_MINUTES), (0, end - WEEK_MINUTES)]


def check_shift(shift: Doc) -> str | None:
    """None, or why the shift is refused."""
    start, end = parse_hhmm(shift["start"]), parse_hhmm(shift["end"])
    if shift.get("overnight"):
        if end > start:
            return "an overnight shift ends the next day, so its end ({}) must not be later than its start ({})" \
                .format(shift["end"], shift["start"])
        return None
    if end <= start:
        return "the shift ends ({}) before it starts ({}); mark it overnight if it ends the next day".format(
            shift["end"], shift["start"])
    return None


def weekly_intervals(shifts: Iterable[Doc]) -> list[dict[str, int]]:
    """[{start, end}] minutes of the week (documents, not pairs: FerretDB
    stores no nested arrays)."""
    return [{"start": s, "end": e} for s, e in sorted(iv for shift in shifts for iv in shift_intervals(shift))]


def duty_hours(shifts: Iterable[Doc]) -> list[int]:
    """The hours of the week (0-167) in which any shift is running."""
    hours: set[int] = set()
    for iv in weekly_intervals(shifts):
        start, end = iv["start"], iv["end"]
        hours.update(range(start // 60, (end - 1) // 60 + 1))
    return sorted(hours)


def hour_of_week(at: datetime, tz: tzinfo) -> int:
    return minute_of_week(at, tz) // 60


def _on_template(intervals: Iterable[Doc], mow: int) -> bool:
    return any(iv["start"] <= mow < iv["end"] for iv in intervals)


def _covered(spans: Iterable[Doc] | None, at: datetime) -> bool:
    return any(span["start"] <= at < span["end"] for span in spans or ())


def on_duty(responder: Doc, at: datetime, tz: tzinfo) -> bool:
    """On duty at ``at``: not on leave, and on a weekly shift or an extra one."""
    if _covered(responder.get("leave"), at):
        return False
    return _on_template(responder.get("intervals") or (), minute_of_week(at, tz)) or \
        _covered(responder.get("extra"), at)


def next_on_duty(responder: Doc, at: datetime, until: datetime, tz: tzinfo) -> datetime | None:
    """The first time in [at, until) the responder is on duty, or None."""
    if on_duty(responder, at, tz):
        return at
    candidates = set()
    local = at.astimezone(tz)
    week_start = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    weeks = int((until - at).total_seconds() // (7 * 86400)) + 2
    for week in range(weeks):
        base = week_start + timedelta(days=7 * week)
        for iv in responder.get("intervals") or ():
            start = iv["start"]
            # a local wall time: built field by field so it stays right across a clock change
            day, minute = divmod(start, 1440)
            wall = (base + timedelta(days=day)).replace(hour=minute // 60, minute=minute % 60, tzinfo=None)
            candidates.add(wall.replace(tzinfo=tz).astimezone(timezone.utc))
    candidates.update(span["start"] for span in responder.get("extra") or ())
    candidates.update(span["end"] for span in responder.get("leave") or ())
    for t in sorted(c for c in candidates if at < c < until):
        if on_duty(responder, t, tz):
            return t
    return None


def in_window(at: datetime, tz: tzinfo, window: Doc) -> bool:
    """Inside a daily window {start, end} of local clock times; a window whose
    end is not after its start runs over midnight."""
    local = at.astimezone(tz)
    minute = local.hour * 60 + local.minute
    start, end = parse_hhmm(window["start"]), parse_hhmm(window["end"])
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end



# teams and candidates --------------------------------------------------------------------
def teams_covering(config: Config, category: str) -> list[str]:
    return [t["code"] for t in config["teams"] if category in t.get("categories", ())]


def squad_teams(config: Config) -> list[str]:
    return [t["code"] for t in config["teams"] if t.get("squad")]


def zone_distance(config: Config, a: str | None, b: str | None) -> float:
    """Metres between two zones of the park (0 for the same zone; unknown
    zones are far)."""
    if a is None or b is None:
        return 1e9
    if a == b:
        return 0.0
    zones = {z["code"]: z for z in config.get("zones", ())}
    if a not in zones or b not in zones:
        return 1e9
    return math.hypot(zones[a]["x"] - zones[b]["x"], zones[a]["y"] - zones[b]["y"])


"""The six must-visits (六必访): pure rules, no I/O.

A household of a kind the park visits gets one visit a month; a month's
visits can be proved until its end in the park's time zone plus the park's
grace, after which an unproved visit is missed and escalated: to the party
group's lead, then to the park's supervisors.
"""
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone, tzinfo

from lamplight.shapes import Config, Doc

# Sujiacun's six must-visits (六必访)
VISIT_KINDS = ("households_in_need", "elderly_alone", "disabled", "unemployed", "left_behind_children",
               "working_age_labour")
VISIT_PLANNED, VISIT_DONE, VISIT_MISSED = "planned", "done", "missed"


def local_month(at: datetime, tz: tzinfo) -> str:
    return at.astimezone(tz).strftime("%Y-%m")


def visit_id(household_code: str, month: str) -> str:
    return "{}:{}".format(household_code, month)


def month_after(month: str) -> str:
    year, mon = (int(x) for x in month.split("-"))
    return "{:04d}-{:02d}".format(year + mon // 12, mon % 12 + 1)


def month_start(month: str, tz: tzinfo) -> datetime:
    year, mon = (int(x) for x in month.split("-"))
    return datetime(year, mon, 1, tzinfo=tz).astimezone(timezone.utc)


VISIT_RULES = {"grace_days": 5, "supervise_after_days": 3}


def visit_rules(config: Config) -> Doc:
    """The park's rules for must-visits (a configuration saved before they
    existed gets the defaults)."""
    return dict(VISIT_RULES, **(config.get("visit_rules") or {}))


def visit_deadline(month: str, tz: tzinfo, grace_days: int) -> datetime:
    """Until when a month's visits can be proved: the month's end in the
    park's time zone, plus the park's grace (a visit made on the 31st is often
    written up days later). Only after it is a visit missed."""
    return month_start(month_after(month), tz) + timedelta(days=grace_days)


def visit_escalation(level: str, at: datetime, to: Iterable[str]) -> Doc:
    """A rung of a missed visit's escalation: the level reached and who was told."""
    return {"level": level, "at": at, "to": list(to)}


def supervision_due(visit: Doc, at: datetime, supervise_after_days: int) -> bool:
    """Whether a missed visit told to its lead is due at the park's supervisors."""
    rungs = visit.get("escalations") or []
    return bool(rungs) and rungs[-1]["level"] == "lead" and \
        rungs[-1]["at"] + timedelta(days=supervise_after_days) <= at

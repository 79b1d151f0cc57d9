"""Responders: registration, rosters, pauses and who is on duty."""
from datetime import datetime

from lamplight.clock import utcnow
from lamplight.errors import BadInput, NotFound
from lamplight.ids import new_id
from lamplight.shapes import Config, Doc, Envelope
from services.volunteers.domain import rosters
from services.volunteers.handlers import Work, on_duty_now, responder_of
from services.volunteers.schemas import VolunteerEventSchema

_volunteer_event = VolunteerEventSchema()


def register(work: Work, data: Doc) -> tuple[Doc, bool]:
    """(the responder, True) registered now, or (the one already registered under the same ref, False)."""
    config = work.config()
    check_codes(config, data)
    responder_id = new_id("rsp")
    roster = data.pop("roster") or {"shifts": [], "leave": [], "extra": []}
    responder = dict(data, _id=responder_id, responder_id=responder_id,
                     ref=data.pop("external_ref") or responder_id,
                     park_id=work.park_id, registered_at=utcnow(), last_work_at=None,
                     categories=_categories(config, data["teams"]), **roster_fields(roster))
    with work.events.staging([volunteer_event(work, responder, "registered")]) as staged:
        responder.update(staged.fields())
        existing = work.store.add_responder(responder)
        staged.written = existing is None
    if existing is not None:
        return existing, False
    return responder, True


def set_roster(work: Work, responder_id: str, roster: Doc) -> Doc:
    """Replace a responder's weekly shifts, leave and extra shifts."""
    work.config()
    responder = responder_of(work.store, responder_id)
    return _change(work, responder, roster_fields(roster), "roster")


def set_active(work: Work, responder_id: str, pause: Doc) -> Doc:
    """Pause a responder (no offers while paused) or make them active again."""
    responder = responder_of(work.store, responder_id)
    fields = {"active": pause["active"], "pause_reason": pause["reason"]}
    return _change(work, responder, fields, "resumed" if pause["active"] else "paused")


def _change(work: Work, responder: Doc, fields: Doc, change: str) -> Doc:
    after = dict(responder, **fields)
    with work.events.staging([volunteer_event(work, after, change)]) as staged:
        staged.written = work.store.set_responder(after["_id"], fields, staged.update())
    if not staged.written:
        raise NotFound("no responder {} in park {}".format(after["_id"], work.park_id))
    return after


def volunteer_event(work: Work, responder: Doc, change: str) -> Envelope:
    envelope: Envelope = work.events.new(
        "volunteer.{}".format("registered" if change == "registered" else "changed"),
        park_id=responder["park_id"], subject=responder["_id"],
        data=_volunteer_event.dump(dict(responder, change=change)))
    return envelope


def on_duty(work: Work, at: datetime | None, team: str | None) -> Doc:
    """Who is on duty in the park at ``at`` (default now): one lookup of
    that hour of the week in the duty index, then the exact minute, leave
    and extra shifts."""
    config = work.config()
    if team is not None and team not in {t["code"] for t in config["teams"]}:
        raise BadInput("unknown team {}".format(team), {"team": ["one of: " + ", ".join(
            t["code"] for t in config["teams"])]})
    at = at or utcnow()
    tz = rosters.zone(config["timezone"])
    on = sorted(on_duty_now(work.store, at, tz, teams=[team] if team else None), key=lambda r: r["_id"])
    return {"park_id": work.park_id, "at": at.isoformat(), "count": len(on),
            "responders": [{"id": r["_id"], "teams": r["teams"], "zone": r.get("zone")} for r in on]}


def _categories(config: Config, teams: list[str]) -> list[str]:
    return sorted({c for t in config["teams"] if t["code"] in teams for c in t.get("categories", ())})


def roster_fields(roster: Doc) -> Doc:
    """A roster as the responder document keeps it: with the weekly intervals
    and the hours of the week the duty index looks up."""
    shifts = roster["shifts"]
    extra = roster["extra"]
    return {"shifts": shifts, "intervals": rosters.weekly_intervals(shifts), "duty_hours": rosters.duty_hours(shifts),
            "leave": roster["leave"], "extra": extra,
            "extra_until": max((s["end"] for s in extra), default=None)}


def check_codes(config: Config, data: Doc) -> None:
    """Teams, skills and zone must be the park's own: unknown ones are 422."""
    errors = {}
    teams = {t["code"] for t in config["teams"]}
    unknown = [t for t in data.get("teams", ()) if t not in teams]
    if unknown:
        errors["teams"] = ["unknown teams: {}; this park's teams are: {}".format(
            ", ".join(unknown), ", ".join(sorted(teams)))]
    unknown = [s for s in data.get("skills", ()) if s not in config["skills"]]
    if unknown:
        errors["skills"] = ["unknown skills: {}; this park's skills are: {}".format(
            ", ".join(unknown), ", ".join(sorted(config["skills"])) or "none")]
    zones = {z["code"] for z in config["zones"]}
    if data.get("zone") and data["zone"] not in zones:
        errors["zone"] = ["unknown zone {}; this park's zones are: {}".format(
            data["zone"], ", ".join(sorted(zones)) or "none")]
    if errors:
        raise BadInput("the responder names what park {} does not have".format(config["park_id"]), errors)

"""Emergency mode (平战转换): the park's mode, call-outs and their replies."""
from lamplight.clock import utcnow
from lamplight.errors import Conflict, NotFound
from lamplight.ids import new_id
from lamplight.publishing import Change
from lamplight.shapes import Doc
from services.volunteers.domain import emergency, rosters
from services.volunteers.handlers import Work, on_duty_now
from services.volunteers.metrics import CALLOUT_RECIPIENTS
from services.volunteers.schemas import CalloutEventSchema, EmergencyEventSchema

_emergency_event = EmergencyEventSchema()
_callout_event = CalloutEventSchema()


def switch(work: Work, command: Doc) -> Doc:
    """Switch the park to emergency mode or back to normal; the same mode again changes nothing."""
    work.config()

    def decide(state: Doc) -> Doc | Change:
        at = utcnow()
        after = emergency.switched(state, command["mode"], command["reason"], command["actor"], at)
        if after is None:
            return emergency.view(state, changed=False)
        after["park_id"] = work.park_id
        event = work.events.new(emergency.event_type(command["mode"]), park_id=work.park_id, subject=work.park_id,
                                data=_emergency_event.dump(dict(after, at=at)))
        return Change({k: after[k] for k in ("mode", "reason", "actor", "since")}, [event],
                      emergency.view(after, changed=True))

    shown: Doc = work.events.change(work.store.emergency, decide, work.store.write_emergency,
                                    conflict=Conflict("the mode of {} kept changing".format(work.park_id),
                                                      {"mode": ["changed concurrently"]}))
    return shown


def mode(work: Work) -> Doc:
    work.config()
    return emergency.view(work.store.emergency())


def call_out(work: Work, command: Doc, idempotency_key: str | None) -> Doc:
    """A call-out in emergency mode reaches the emergency squad and everyone
    on duty now: one emergency.called_out per person, each in its own reply
    record, so replies are counted per call-out."""
    store, park_id = work.store, work.park_id
    config = work.config()
    if store.emergency()["mode"] != emergency.EMERGENCY:
        raise Conflict("park {} is not in emergency mode".format(park_id), {"mode": ["normal"]},
                       code="not_in_emergency")
    at = utcnow()
    tz = rosters.zone(config["timezone"])
    callout_id = "co_" + (idempotency_key or new_id("co"))
    callout, created = store.insert_callout({"_id": callout_id, "callout_id": callout_id,
                                             "message": command["message"], "actor": command["actor"], "at": at})
    squad_teams = rosters.squad_teams(config)
    why = emergency.callout_reasons(on_duty_now(store, at, tz),
                                    store.active_in_teams(squad_teams) if squad_teams else [])
    docs, envelopes = [], []
    for rid, reason in why.items():
        envelopes.append(work.events.new("emergency.called_out", park_id=park_id, subject=callout_id,
                                         data=_callout_event.dump({"callout_id": callout_id, "responder_id": rid,
                                                                   "message": callout["message"], "why": reason,
                                                                   "answer": None, "at": at})))
        docs.append({"_id": "{}:{}".format(callout_id, rid), "callout_id": callout_id, "responder_id": rid,
                     "why": reason, "answer": None, "at": at})
    fresh = work.events.insert_many(docs, envelopes, store.insert_recipients)
    CALLOUT_RECIPIENTS.labels(park_id).inc(len(fresh))
    return {"callout_id": callout_id, "created": created, "recipients": len(docs),
            "squad": sum(1 for r in why.values() if r == "squad"),
            "on_duty": sum(1 for r in why.values() if r == "on_duty")}


def reply(work: Work, callout_id: str, command: Doc) -> Doc:
    """A called-out responder's answer; the newest answer stands."""
    store = work.store
    callout = _callout_of(work, callout_id)
    if store.recipient(callout_id, command["responder_id"]) is None:
        raise NotFound("{} was not called out by {}".format(command["responder_id"], callout_id),
                       {"responder_id": ["not a recipient"]})
    at = utcnow()
    envelope = work.events.new("emergency.replied", park_id=work.park_id, subject=callout_id,
                               data=_callout_event.dump({
                                   "callout_id": callout_id, "responder_id": command["responder_id"],
                                   "message": callout["message"], "why": "reply", "answer": command["answer"],
                                   "at": at}))
    with work.events.staging([envelope]) as staged:
        staged.written = store.answer(callout_id, command["responder_id"], command["answer"], command["note"], at,
                                      staged.update())
    return tally(work, callout_id)


def tally(work: Work, callout_id: str) -> Doc:
    """A call-out with how many are coming, cannot come, or have not answered."""
    callout = _callout_of(work, callout_id)
    counts = work.store.reply_counts(callout_id)
    return {"callout_id": callout_id, "message": callout["message"], "at": callout["at"].isoformat(),
            "recipients": sum(counts.values()), "coming": counts.get("coming", 0),
            "cannot": counts.get("cannot", 0), "no_answer": counts.get("no_answer", 0)}


def _callout_of(work: Work, callout_id: str) -> Doc:
    callout: Doc | None = work.store.get_callout(callout_id)
    if callout is None:
        raise NotFound("no call-out {} in park {}".format(callout_id, work.park_id), {"callout_id": ["unknown"]})
    return callout

"""Dispatch: pure rules, no I/O.

Dispatch filters hard (same park, active, a team covering the category, the
skills the item needs, under the cap on open tasks, on duty now or before
the need is due) and then ranks soft: on duty now before later, nearer zones
before farther, whoever was given work least recently first, and a stable
hash of need and responder last, so that the same facts always give the
same offer.
"""
import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from lamplight.shapes import Config, Doc
from services.volunteers.domain import RuleBroken
from services.volunteers.domain.rosters import in_window, next_on_duty, zone_distance

# tasks
OFFERED, CLAIMED, IN_PROGRESS, DONE, WITHDRAWN = "offered", "claimed", "in_progress", "done", "withdrawn"
TASK_STATUSES = (OFFERED, CLAIMED, IN_PROGRESS, DONE, WITHDRAWN)
HELD = (CLAIMED, IN_PROGRESS)
OPEN = (OFFERED, CLAIMED, IN_PROGRESS)
# offers (one per responder a task was offered to)
OFFER_LIVE, OFFER_WON, OFFER_EXPIRED, OFFER_DECLINED, OFFER_WITHDRAWN = (
    "offered", "claimed", "expired", "declined", "withdrawn")
# how a task is dispatched
MODE_OFFER, MODE_WISH, MODE_UNIT = "offer", "wish", "unit"
# the actions on a task, and the statuses they are allowed from
TASK_ACTIONS = {
    "claim": (OFFERED,),
    "decline": (OFFERED,),
    "start": (CLAIMED,),
    "complete": (CLAIMED, IN_PROGRESS),
    "release": (CLAIMED, IN_PROGRESS),
    "request_takeover": (CLAIMED, IN_PROGRESS),
    "answer_takeover": (CLAIMED, IN_PROGRESS),
}


def ineligible(responder: Doc, task: Doc, park_id: str, at: datetime, tz: tzinfo, open_count: int,
               config: Config) -> str | None:
    """None when the responder may be offered the task, else why not."""
    return _eligibility(responder, task, park_id, at, tz, open_count, config)[0]


def _eligibility(responder: Doc, task: Doc, park_id: str, at: datetime, tz: tzinfo, open_count: int,
                config: Config) -> tuple[str | None, datetime | None]:
    """(why not, or None; the first time on duty before the due time)."""
    if responder.get("park_id") != park_id:
        return "other_park", None
    if responder.get("kind") != "volunteer":
        return "not_a_volunteer", None
    if not responder.get("active", True):
        return "paused", None
    teams = task.get("teams") or []
    if teams and not set(responder.get("teams") or ()) & set(teams):
        return "team", None
    if not set(task.get("skills") or ()) <= set(responder.get("skills") or ()):
        return "skills", None
    if responder["_id"] in (task.get("offered_to") or ()):
        return "already_offered", None
    if open_count >= (responder.get("max_open_tasks") or config["dispatch"]["default_cap"]):
        return "cap", None
    start = next_on_duty(responder, at, max(task["due_at"], at + timedelta(minutes=1)), tz)
    return ("off_duty", None) if start is None else (None, start)


def stable_hash(*parts: str) -> int:
    return int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:12], 16)


def rank(responders: Iterable[Doc], task: Doc, park_id: str, at: datetime, tz: tzinfo, open_counts: dict[str, int],
         config: Config) -> list[tuple[Doc, datetime]]:
    """[(responder, on_duty_from)] of the eligible, best first."""
    ranked: list[tuple[Any, Doc, datetime]] = []
    for r in responders:
        why_not, start = _eligibility(r, task, park_id, at, tz, open_counts.get(r["_id"], 0), config)
        if why_not is not None or start is None:  # an eligible responder always has a start
            continue
        distance = zone_distance(config, r.get("zone"), task.get("zone"))
        # nearness counts in steps of 500 m: within a step, fairness decides
        key = (int((start - at).total_seconds() // 60), int(distance // 500),
               r.get("last_work_at") or datetime.min.replace(tzinfo=timezone.utc),
               stable_hash(task["need_id"], r["_id"]))
        ranked.append((key, r, start))
    ranked.sort(key=lambda item: item[0])
    return [(r, start) for _, r, start in ranked]


# tasks ----------------------------------------------------------------------------------
def task_id(need_id: str, routing: int) -> str:
    """One task per routing of a need: the idempotency key of dispatch."""
    return "{}:task:{}".format(need_id, routing)


def new_task(park_id: str, need: Doc, mode: str, teams: list[str], skills: list[str], at: datetime,
             config: Config) -> Doc:
    return {
        "task_id": task_id(need["need_id"], need["routing"]), "park_id": park_id, "need_id": need["need_id"],
        "routing": need["routing"], "kind": need.get("kind"), "category": need["category"],
        "item": need.get("item"), "grade": need["grade"], "summary": need["summary"], "due_at": need["due_at"],
        "zone": need.get("zone"), "teams": teams, "skills": skills, "mode": mode, "created_at": at,
        "version": 0,
        # the mutable state (STATE below)
        "status": OFFERED, "round": 0, "offers": {}, "offered_to": [], "holder": None, "claimed_at": None,
        "started_at": None, "completed_at": None, "completion": None, "escalations": [], "takeover": None,
        "next_check_at": None, "history": [], "retry_at": None,
    }


TASK_STATE = ("status", "round", "offers", "offered_to", "holder", "claimed_at", "started_at", "completed_at",
              "completion", "escalations", "takeover", "next_check_at", "history")


def add_offers(task: Doc, responders: list[Doc], at: datetime, config: Config,
               reason: str) -> Doc:
    """A new offer round to ``responders`` (list of responder docs)."""
    minutes = config["dispatch"]["offer_minutes"]
    task["round"] += 1
    for r in responders:
        task["offers"][r["_id"]] = {"status": OFFER_LIVE, "round": task["round"], "offered_at": at,
                                    "expires_at": at + timedelta(minutes=minutes), "member_id": r.get("member_id"),
                                    "reason": reason}
        if r["_id"] not in task["offered_to"]:
            task["offered_to"].append(r["_id"])
    task["history"].append({"at": at, "what": "offered", "round": task["round"], "reason": reason,
                            "to": [r["_id"] for r in responders]})
    return task


def live_offers(task: Doc) -> list[str]:
    return [rid for rid, o in task["offers"].items() if o["status"] == OFFER_LIVE]


def check_sooner(before: Doc, after: Doc) -> datetime | None:
    """The time to ring the sweep's alarm at after a task's write, or None when
    the write needs none: no next check, or one no sooner than the task had (the
    alarm rings by that one already: it was rung for it, and a sweep settles no
    later than any task's next check)."""
    at, was = after.get("next_check_at"), before.get("next_check_at")
    return at if at is not None and (was is None or at < was) else None


def next_check(task: Doc, config: Config) -> datetime | None:
    """When the sweep must look at the task again, or None."""
    times = []
    if task["status"] == OFFERED:
        times += [o["expires_at"] for o in task["offers"].values() if o["status"] == OFFER_LIVE]
        if task.get("retry_at") and not live_offers(task):
            times.append(task["retry_at"])
        if night_page_pending(task, config):
            times.append(task["created_at"] + timedelta(minutes=config["dispatch"]["night_page_after_minutes"]))
    if task["status"] == CLAIMED:
        times.append(task["claimed_at"] + timedelta(hours=config["wishes"]["stale_claim_hours"]))
    if task["status"] in HELD and task.get("takeover"):
        times.append(task["takeover"]["answer_by"])
    return min(times) if times else None


def night_page_pending(task: Doc, config: Config) -> bool:
    return task["status"] == OFFERED and task["grade"] in config["dispatch"]["night_grades"] and \
        not any(e["level"] == "night_squad" for e in task["escalations"])


def transition(task: Doc, action: str, args: Doc, at: datetime, config: Config) -> tuple[Doc, list[str]]:
    """Apply a responder's action to a task (a copy is changed). Returns the
    changed task and the event types it causes. Raises RuleBroken."""
    if action not in TASK_ACTIONS:
        raise RuleBroken("unknown action {}".format(action), "unknown_action",
                         {"action": ["one of: " + ", ".join(TASK_ACTIONS)]})
    if task["status"] not in TASK_ACTIONS[action]:
        # a claim on a task already taken names the task's state, never who holds it
        raise RuleBroken("task {} is {}: it cannot be {}".format(task["task_id"], task["status"], _past(action)),
                         "already_taken" if action == "claim" else "illegal_transition", {"status": [task["status"]]})
    who = args["responder_id"]
    task = copy_task(task)
    if action not in ("claim", "decline"):
        _check_holder(task, who)
    task, events = _TASK_CHANGES[action](task, who, args, at)
    task["history"].append({"at": at, "what": action, "by": who, "note": args.get("note")})
    task["next_check_at"] = next_check(task, config)
    return task, events


# what each action does to a task (a copy): (task, who, args, at) -> (task, event types) ---------
def _live_offer(task: Doc, who: str) -> Doc:
    offer = task["offers"].get(who)
    if offer is None or offer["status"] != OFFER_LIVE:
        raise RuleBroken("task {} is not offered to {}".format(task["task_id"], who), "not_offered",
                         {"responder_id": ["no live offer"]})
    return offer


def _claim(task: Doc, who: str, args: Doc, at: datetime) -> tuple[Doc, list[str]]:
    offer = task["offers"].get(who) if task["mode"] == MODE_WISH else _live_offer(task, who)
    for rid, o in task["offers"].items():
        if rid != who and o["status"] == OFFER_LIVE:
            o.update(status=OFFER_WITHDRAWN, closed_at=at)
    if offer is not None:
        offer.update(status=OFFER_WON, closed_at=at)
    task.update(status=CLAIMED, holder={"responder_id": who, "member_id": args.get("member_id")},
                claimed_at=at, takeover=None)
    return task, ["task.claimed"]


def _decline(task: Doc, who: str, args: Doc, at: datetime) -> tuple[Doc, list[str]]:
    _live_offer(task, who).update(status=OFFER_DECLINED, closed_at=at, note=args.get("note"))
    return task, ["task.declined"]


def _start(task: Doc, who: str, args: Doc, at: datetime) -> tuple[Doc, list[str]]:
    task.update(status=IN_PROGRESS, started_at=at)
    return task, ["task.started"]


def _complete(task: Doc, who: str, args: Doc, at: datetime) -> tuple[Doc, list[str]]:
    began = task["started_at"] or task["claimed_at"]
    hours = args.get("hours")
    if hours is None:
        hours = round(min((at - began).total_seconds() / 3600.0, 24.0), 2)
    task.update(status=DONE, completed_at=at, takeover=None, completion={
        "note": args.get("note"), "photo_ref": args.get("photo_ref"), "place": args.get("place"), "hours": hours})
    return task, ["task.completed", "volunteer.service_hours"]


def _release(task: Doc, who: str, args: Doc, at: datetime) -> tuple[Doc, list[str]]:
    task.update(status=OFFERED, holder=None, claimed_at=None, started_at=None, takeover=None)
    return task, ["task.released"]


def _request_takeover(task: Doc, who: str, args: Doc, at: datetime) -> tuple[Doc, list[str]]:
    raise AssertionError("takeover requests are made by another responder: request_takeover()")


def _answer_takeover(task: Doc, who: str, args: Doc, at: datetime) -> tuple[Doc, list[str]]:
    if not task.get("takeover"):
        raise RuleBroken("nobody asked to take task {} over".format(task["task_id"]), "no_takeover",
                         {"takeover": ["none pending"]})
    if args.get("accept"):
        return transfer(task, at, "accepted"), ["task.transferred"]
    task.update(takeover=None)
    return task, ["task.takeover_refused"]


_TASK_CHANGES = {"claim": _claim, "decline": _decline, "start": _start, "complete": _complete,
                 "release": _release, "request_takeover": _request_takeover, "answer_takeover": _answer_takeover}


def request_takeover(task: Doc, requester: Doc, at: datetime, config: Config) -> tuple[Doc, list[str]]:
    if task["status"] not in HELD:
        raise RuleBroken("task {} is {}: nothing to take over".format(task["task_id"], task["status"]),
                         "illegal_transition", {"status": [task["status"]]})
    if task["holder"]["responder_id"] == requester["responder_id"]:
        raise RuleBroken("the holder cannot take over their own task", "own_task",
                         {"responder_id": ["holds the task"]})
    if task.get("takeover"):
        raise RuleBroken("a take-over of task {} is already pending".format(task["task_id"]), "takeover_pending",
                         {"takeover": ["pending until {}".format(task["takeover"]["answer_by"].isoformat())]})
    answer_by = at + timedelta(hours=config["wishes"]["takeover_answer_hours"])
    task = dict(task, takeover=dict(requester, requested_at=at, answer_by=answer_by),
                history=task["history"] + [{"at": at, "what": "request_takeover", "by": requester["responder_id"]}])
    task["next_check_at"] = next_check(task, config)
    return task, ["task.takeover_requested"]


def copy_task(task: Doc) -> Doc:
    """A copy whose offers, history, escalations and offer list can be changed."""
    return dict(task, offers={k: dict(v) for k, v in task["offers"].items()}, history=list(task["history"]),
                escalations=list(task["escalations"]), offered_to=list(task["offered_to"]))


def withdraw(task: Doc, at: datetime, why: str) -> tuple[Doc | None, list[str]]:
    """The task withdrawn (its need was cancelled, rejected or assigned by the
    desk); None when it is no longer open. Returns (task, responders to tell)."""
    if task["status"] not in OPEN:
        return None, []
    task = copy_task(task)
    told = live_offers(task)
    for rid in told:
        task["offers"][rid].update(status=OFFER_WITHDRAWN, closed_at=at)
    if task.get("holder"):
        told.append(task["holder"]["responder_id"])
    task.update(status=WITHDRAWN, takeover=None, retry_at=None)
    task["history"].append({"at": at, "what": "withdrawn", "reason": why})
    return task, told


def transfer(task: Doc, at: datetime, how: str) -> Doc:
    takeover = task["takeover"]
    previous = task["holder"]
    return dict(task, holder={"responder_id": takeover["responder_id"], "member_id": takeover.get("member_id")},
                claimed_at=at, started_at=None, status=CLAIMED, takeover=None,
                history=task["history"] + [{"at": at, "what": "transferred", "how": how,
                                            "from": previous["responder_id"], "to": takeover["responder_id"]}])


def _check_holder(task: Doc, who: str) -> None:
    if (task.get("holder") or {}).get("responder_id") != who:
        raise RuleBroken("only the holder of task {} can do that".format(task["task_id"]), "not_holder",
                         {"responder_id": ["not the holder"]})


def _past(action: str) -> str:
    return {"claim": "claimed", "decline": "declined", "start": "started", "complete": "completed",
            "release": "released", "answer_takeover": "answered"}.get(action, action)


def sweep_steps(task: Doc, at: datetime, tz: tzinfo, config: Config) -> list[str]:
    """What the sweep must do to the task now: a list of step names."""
    steps = []
    if task["status"] == OFFERED:
        if any(o["status"] == OFFER_LIVE and o["expires_at"] <= at for o in task["offers"].values()):
            steps.append("expire")
        elif task["mode"] in (MODE_OFFER, MODE_WISH) and not live_offers(task) and task.get("retry_at") and \
                task["retry_at"] <= at:
            steps.append("reoffer")
        if night_page_pending(task, config) and \
                task["created_at"] + timedelta(minutes=config["dispatch"]["night_page_after_minutes"]) <= at and \
                in_window(at, tz, config["dispatch"]["night"]):
            steps.append("night_page")
    if task["status"] == CLAIMED and task["claimed_at"] + timedelta(
            hours=config["wishes"]["stale_claim_hours"]) <= at:
        steps.append("release_stale")
    if task["status"] in HELD and task.get("takeover") and task["takeover"]["answer_by"] <= at:
        steps.append("transfer")
    return steps


def expire_offers(task: Doc, at: datetime) -> None:
    for o in task["offers"].values():
        if o["status"] == OFFER_LIVE and o["expires_at"] <= at:
            o.update(status=OFFER_EXPIRED, closed_at=at)


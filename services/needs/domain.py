"""Needs: pure rules, no I/O.

A need's life is a state machine driven by *actions*. Every action that
changes a need is recorded in its timeline with the action's resolved
arguments and time, and ``apply`` is a pure function of (state, action, args,
at): so replaying a timeline from its first entry gives back the stored state
(a property test checks exactly that against the real database). Whatever
depends on the park's configuration (a grade's time limit, the evaluation
window, the escalation ladder) is resolved into the arguments by the service
before ``apply`` runs, so a later change of configuration never rewrites
history.
"""
import difflib
import hashlib
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from lamplight.errors import DomainError
from lamplight.ids import fingerprint
from lamplight.logs import mask_string
from lamplight.shapes import Config, Doc

# Where needs come in (DOMAIN.md, "Needs intake").
CHANNELS = (
    "official_account", "qq_group", "wish_wall", "hotline", "walk_in",
    "liaison_meeting", "need_card", "survey", "door_knocking",
)
# Wuhan's "four services": who asks.
REQUESTER_KINDS = ("enterprise", "talent", "member", "worker")
NEED_KINDS = ("micro_wish", "urgent_matter", "enterprise_request", "complaint")

# statuses
SUBMITTED = "submitted"
TRIAGED = "triaged"
ASSIGNED = "assigned"
IN_PROGRESS = "in_progress"
WAITING = "waiting_on_requester"
ESCALATED = "escalated"
RESOLVED = "resolved"
CLOSED = "closed"
REOPENED = "reopened"
REJECTED = "rejected"
CANCELLED = "cancelled"
STATUSES = (SUBMITTED, TRIAGED, ASSIGNED, IN_PROGRESS, WAITING, ESCALATED, RESOLVED, CLOSED, REOPENED,
            REJECTED, CANCELLED)
FINAL = (CLOSED, REJECTED, CANCELLED)
OPEN = tuple(s for s in STATUSES if s not in FINAL)
# the time limit runs in these; it is paused while waiting on the requester
# and stops once the need is resolved
CLOCK_RUNNING = (SUBMITTED, TRIAGED, ASSIGNED, IN_PROGRESS, ESCALATED, REOPENED)

EVALUATION_OUTCOMES = ("fixed", "partly_fixed", "not_fixed")
REVIEWERS = ("organisation", "committee", "park_audit")

# action -> the statuses it may start from. The target status is in ``apply``.
ALLOWED_FROM = {
    "triage": (SUBMITTED, TRIAGED, ASSIGNED, ESCALATED, REOPENED),
    "assign": (TRIAGED, ESCALATED, REOPENED),
    "start": (ASSIGNED,),
    "wait": (TRIAGED, ASSIGNED, IN_PROGRESS, ESCALATED, REOPENED),
    "resume": (WAITING,),
    "escalate": (SUBMITTED, TRIAGED, ASSIGNED, IN_PROGRESS, REOPENED),
    "release": (ASSIGNED, IN_PROGRESS),
    "resolve": (ASSIGNED, IN_PROGRESS, ESCALATED),
    "evaluate": (RESOLVED,),
    "close_unevaluated": (RESOLVED,),
    "reopen": (RESOLVED, CLOSED),
    "reject": (SUBMITTED, TRIAGED, ESCALATED, REOPENED),
    "cancel": (SUBMITTED, TRIAGED, ASSIGNED, IN_PROGRESS, WAITING, ESCALATED, REOPENED),
    "link_duplicate": (SUBMITTED, TRIAGED),
    "overdue": CLOCK_RUNNING,
    "supervise": CLOCK_RUNNING,
    "review": (CLOSED,),
}
# the commands people (or the dispatch events) give; overdue and supervise
# come from the sweep only
COMMANDS = tuple(a for a in ALLOWED_FROM if a not in ("overdue", "supervise", "close_unevaluated"))


class NeedsRuleError(DomainError):
    """What the needs rules refuse (lamplight.errors.DomainError)."""


class IllegalTransition(NeedsRuleError):
    kind = "conflict"

    def __init__(self, action: str, status: str) -> None:
        self.action, self.status = action, status
        self.allowed = allowed_actions(status)
        super().__init__("cannot {} a need that is {}; allowed now: {}".format(
            action, status, ", ".join(self.allowed) or "nothing (it is final)"),
            {"status": [status], "allowed_actions": self.allowed}, code="illegal_transition")


def allowed_actions(status: str) -> list[str]:
    return [a for a in COMMANDS if status in ALLOWED_FROM[a]]


# the event each action publishes (evaluate adds need.closed or need.reopened)
EVENT_FOR = {
    "submit": "need.submitted", "triage": "need.triaged", "assign": "need.assigned", "start": "need.started",
    "wait": "need.waiting", "resume": "need.resumed", "escalate": "need.escalated", "release": "need.released",
    "resolve": "need.resolved", "evaluate": "need.evaluated", "close_unevaluated": "need.closed",
    "reopen": "need.reopened", "reject": "need.rejected", "cancel": "need.cancelled",
    "link_duplicate": "need.cancelled", "overdue": "need.overdue", "supervise": "need.supervision_raised",
    "review": "need.reviewed",
}
NEED_EVENT_TYPES = tuple(sorted(set(EVENT_FOR.values()) | {"need.closed", "need.reopened", "need.followed"}))

# The fields apply() owns. The replay check compares exactly these.
STATE_FIELDS = (
    "status", "category", "item", "grade", "team", "unit", "due_at", "paused_at", "paused_from",
    "paused_seconds", "responder_id", "member_id", "task_id", "resolved_at", "closed_at",
    "evaluation_due", "evaluation", "overdue_for", "overdue_count", "ladder_level", "escalated_to",
    "rejection", "cancel_reason", "duplicate_of", "reopen_count", "reviews", "routing", "public",
    "public_title", "public_notes", "sweep_at",
)
# the sweep_at of a need the time-limit sweep has nothing more to do with (it is waiting on its
# requester, closed, cancelled...): a date, so that the sweep's ranges of dates never hold it,
# and a need whose sweep_at is missing or stale is set right when its park's open needs are
# counted (handlers.lifecycle.count_open)
NO_SWEEP = datetime(9999, 12, 31, tzinfo=timezone.utc)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def initial_state(args: Doc, at: datetime) -> Doc:
    """The state of a need just submitted. ``args`` carries the resolved
    grade and its time limit in minutes."""
    return {
        "status": SUBMITTED, "category": args["category"], "item": args.get("item"), "grade": args["grade"],
        "team": None, "unit": None, "due_at": at + timedelta(minutes=args["due_minutes"]),
        "paused_at": None, "paused_from": None, "paused_seconds": 0.0, "responder_id": None,
        "member_id": None, "task_id": None, "resolved_at": None, "closed_at": None, "evaluation_due": None,
        "evaluation": None, "overdue_for": None, "overdue_count": 0, "ladder_level": None,
        "escalated_to": None, "rejection": None, "cancel_reason": None, "duplicate_of": None,
        "reopen_count": 0, "reviews": {}, "routing": 0, "public": args.get("public", True),
        "public_title": args["public_title"], "public_notes": [],
        "sweep_at": at + timedelta(minutes=args["due_minutes"]),
    }


def apply(state: Doc, action: str, args: Doc, at: datetime, submitted_at: datetime) -> Doc:
    """The changes ``action`` makes to a need in ``state`` at time ``at``.

    Returns a dict of changed fields (a subset of STATE_FIELDS). Raises
    IllegalTransition when the action is not allowed from the current status.
    """
    status = state["status"]
    if status not in ALLOWED_FROM[action]:
        raise IllegalTransition(action, status)
    changes: Doc = {}
    if args.get("public_note"):
        changes["public_notes"] = state["public_notes"] + [
            {"at": at, "status": status, "note": args["public_note"]}]
    changes.update(_CHANGES[action](state, args, at, submitted_at))
    changes["sweep_at"] = sweep_at(dict(state, **changes))
    return changes


# what each action changes: (state, args, at, submitted_at) -> changed fields --------------
def _triage(state: Doc, args: Doc, at: datetime, submitted_at: datetime) -> Doc:
    changes = dict(status=TRIAGED, category=args["category"], item=args.get("item"), grade=args["grade"],
                   team=args.get("team"), unit=args.get("unit"), responder_id=None, member_id=None,
                   task_id=None, routing=state["routing"] + 1)
    if args["grade"] != state["grade"]:  # a new grade's limit counts from submission, minus the time paused
        changes["due_at"] = submitted_at + timedelta(minutes=args["due_minutes"], seconds=state["paused_seconds"])
    if "public" in args:
        changes["public"] = args["public"]
    if args.get("public_title"):
        changes["public_title"] = args["public_title"]
    return changes


def _assign(state: Doc, args: Doc, at: datetime, submitted_at: datetime) -> Doc:
    return dict(status=ASSIGNED, responder_id=args.get("responder_id"), member_id=args.get("member_id"),
                task_id=args.get("task_id"), unit=args.get("unit") or state["unit"])


def _resume(state: Doc, args: Doc, at: datetime, submitted_at: datetime) -> Doc:
    paused = (at - state["paused_at"]).total_seconds()
    return dict(status=state["paused_from"], paused_at=None, paused_from=None,
                paused_seconds=state["paused_seconds"] + paused, due_at=state["due_at"] + timedelta(seconds=paused))


def _resolve(state: Doc, args: Doc, at: datetime, submitted_at: datetime) -> Doc:
    changes = dict(status=RESOLVED, resolved_at=at, evaluation_due=at + timedelta(days=args["evaluation_days"]))
    for key in ("responder_id", "member_id", "task_id"):
        if args.get(key):
            changes[key] = args[key]
    return changes


def _evaluate(state: Doc, args: Doc, at: datetime, submitted_at: datetime) -> Doc:
    changes: Doc = {"evaluation": {"rating": args["rating"], "outcome": args["outcome"], "at": at}}
    if args["outcome"] == "not_fixed":  # back to the same team, with a fresh time limit
        changes.update(_reopen(state, args, at))
    else:
        changes.update(status=CLOSED, closed_at=at, evaluation_due=None)
    return changes


def _overdue(state: Doc, args: Doc, at: datetime, submitted_at: datetime) -> Doc:
    if state["due_at"] > at:
        raise ValueError("not overdue before {}".format(_iso(state["due_at"])))
    if state["overdue_for"] == state["due_at"]:
        raise ValueError("this crossing was already marked")
    return dict(overdue_for=state["due_at"], overdue_count=state["overdue_count"] + 1, ladder_level=args["level"])


def _review(state: Doc, args: Doc, at: datetime, submitted_at: datetime) -> Doc:
    reviews = dict(state["reviews"])
    reviews[args["by"]] = {"score": args["score"], "note": args.get("note", ""), "at": at}
    return {"reviews": reviews}


_CHANGES = {
    "triage": _triage,
    "assign": _assign,
    "start": lambda state, args, at, submitted_at: dict(status=IN_PROGRESS),
    "wait": lambda state, args, at, submitted_at: dict(status=WAITING, paused_at=at, paused_from=state["status"]),
    "resume": _resume,
    "escalate": lambda state, args, at, submitted_at: dict(status=ESCALATED, escalated_to=args["to"]),
    "release": lambda state, args, at, submitted_at: dict(status=TRIAGED, responder_id=None, member_id=None,
                                                          task_id=None, routing=state["routing"] + 1),
    "resolve": _resolve,
    "evaluate": _evaluate,
    "close_unevaluated": lambda state, args, at, submitted_at: dict(
        status=CLOSED, closed_at=at, evaluation_due=None,
        evaluation={"rating": None, "outcome": "no_answer", "at": at}),
    "reopen": lambda state, args, at, submitted_at: _reopen(state, args, at),
    "reject": lambda state, args, at, submitted_at: dict(
        status=REJECTED, closed_at=at, rejection={"reason": args["reason"], "redirect_to": args.get("redirect_to")}),
    "cancel": lambda state, args, at, submitted_at: dict(status=CANCELLED, closed_at=at, cancel_reason=args["reason"],
                                                         paused_at=None, paused_from=None),
    "link_duplicate": lambda state, args, at, submitted_at: dict(status=CANCELLED, closed_at=at,
                                                                 cancel_reason="duplicate", duplicate_of=args["of"]),
    "overdue": _overdue,
    "supervise": lambda state, args, at, submitted_at: dict(ladder_level=args["level"]),
    "review": _review,
}


def _reopen(state: Doc, args: Doc, at: datetime) -> Doc:
    return {"status": REOPENED, "resolved_at": None, "closed_at": None, "evaluation_due": None,
            "reopen_count": state["reopen_count"] + 1, "routing": state["routing"] + 1,
            "due_at": at + timedelta(minutes=args["due_minutes"]), "overdue_for": None, "ladder_level": None}


def events_for(action: str, changes: Doc) -> list[str]:
    """The event types one applied action publishes."""
    types = [EVENT_FOR[action]]
    if action == "evaluate":
        types.append("need.reopened" if changes["status"] == REOPENED else "need.closed")
    return types


def replay(timeline: list[Doc]) -> Doc:
    """Fold a timeline back into a state: the check that the stored state is
    exactly what the recorded actions produce."""
    first = timeline[0]
    assert first["action"] == "submit", first
    submitted_at = first["at"]
    state = initial_state(first["args"], submitted_at)
    for entry in timeline[1:]:
        state.update(apply(state, entry["action"], entry["args"], entry["at"], submitted_at))
    return state


class Taxonomy:
    """A park's configuration, looked up: categories, items, grades."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.categories = {c["code"]: c for c in config["categories"]}
        self.items = {i["code"]: (c, i) for c in config["categories"] for i in c["items"]}
        self.grades = {g["code"]: g for g in config["grades"]}
        self.ladder = config["escalation"]

    def category(self, code: str) -> Doc:
        if code not in self.categories:
            raise UnknownCode("unknown category {}".format(code), {"category": [
                "unknown; this park's categories are: " + ", ".join(sorted(self.categories))]})
        return self.categories[code]

    def item(self, category_code: str, code: str | None) -> Doc | None:
        category = self.category(category_code)
        if code is None:
            return None
        allowed = [i["code"] for i in category["items"]]
        if code not in allowed:
            raise UnknownCode("unknown item {} in category {}".format(code, category_code), {"item": [
                "unknown in {}; its items are: {}".format(category_code, ", ".join(allowed))]})
        return self.items[code][1]

    def grade(self, code: str) -> Doc:
        if code not in self.grades:
            raise UnknownCode("unknown grade {}".format(code), {"grade": [
                "unknown; this park's grades are: " + ", ".join(self.grades)]})
        return self.grades[code]

    def default_grade(self, kind: str, item: Doc | None) -> Doc:
        code = ((item or {}).get("default_grade") or self.config["kind_grades"].get(kind)
                or self.config["grades"][-1]["code"])
        return self.grade(code)

    def routing(self, category_code: str, item: Doc | None) -> tuple[str | None, str | None]:
        """(team, unit) a need of this category and item goes to by default."""
        category = self.categories[category_code]
        return ((item or {}).get("default_team") or category.get("default_team"), (item or {}).get("default_unit"))

    def due_minutes(self, grade_code: str) -> int:
        grade = self.grades.get(grade_code) or self.config["grades"][-1]
        return grade["due_minutes"]


class UnknownCode(NeedsRuleError):
    """A category, item or grade the park's configuration does not have;
    ``fields`` names the field and lists what the park has."""


def new_need(taxonomy: Taxonomy, park_id: str, need_id: str, submission: Doc, now: datetime,
             idempotency_key: str | None, duplicates: list[str], meeting: Doc | None,
             requester_key: str) -> tuple[Doc, bool]:
    """A need as accepted at ``now``, routed at once by the park's taxonomy
    when the park auto-triages and nothing suggests a duplicate. Returns
    (need, auto_triaged)."""
    item = taxonomy.items.get(submission["item"], (None, None))[1]
    grade = submission["grade"] or taxonomy.default_grade(submission["kind"], item)["code"]
    submit_args = {"category": submission["category"], "item": submission["item"], "grade": grade,
                   "due_minutes": taxonomy.due_minutes(grade),
                   "public_title": public_title(submission["title"], submission["requester"])}
    timeline = [timeline_entry(now, "submit", submit_args, None, SUBMITTED, submission["entered_by"] or "requester",
                               "received via " + submission["channel"])]
    state = initial_state(submit_args, now)
    team, unit = taxonomy.routing(submission["category"], item)
    auto = bool(taxonomy.config["auto_triage"] and (team or unit) and not duplicates)
    if auto:
        args = {"category": submission["category"], "item": submission["item"], "grade": grade,
                "due_minutes": taxonomy.due_minutes(grade), "team": team, "unit": unit}
        state.update(apply(state, "triage", args, now, now))
        timeline.append(timeline_entry(now, "triage", args, SUBMITTED, TRIAGED, "system",
                                       "routed by the park's taxonomy"))
    need = dict(state, _id="{}/{}".format(park_id, need_id), need_id=need_id, park_id=park_id, version=1,
                kind=submission["kind"], channel=submission["channel"], title=submission["title"],
                description=submission["description"], requester=submission["requester"],
                details=submission["details"], entered_by=submission["entered_by"], meeting=meeting,
                zone=submission.get("zone"),
                idempotency_key=idempotency_key or need_id, fingerprint=submission_fingerprint(submission),
                requester_key=requester_key, possible_duplicates=duplicates, submitted_at=now, updated_at=now,
                timeline=timeline)
    return need, auto


def timeline_entry(at: datetime, action: str, args: Doc, from_status: str | None, status: str, actor: Any,
                   note: str | None) -> Doc:
    return {"at": at, "action": action, "args": args, "from": from_status, "status": status, "actor": actor,
            "note": note, "public_note": args.get("public_note")}


# time limits and supervision ---------------------------------------------------------
def is_overdue(need: Doc, now: datetime) -> bool:
    return need["status"] in CLOCK_RUNNING and need["due_at"] <= now


def supervision_due(need: Doc, ladder: list[Doc], now: datetime) -> list[tuple[str, str]]:
    """The sweep's actions for one need at ``now``: [("overdue", level)] once
    per crossing of its due time, then ("supervise", level) for each rung of
    the ladder whose wait has passed."""
    if not is_overdue(need, now) or not ladder:
        return []
    actions = []
    if need.get("overdue_for") != need["due_at"]:
        actions.append(("overdue", ladder[0]["level"]))
        current = 0
    else:
        levels = [rung["level"] for rung in ladder]
        current = levels.index(need["ladder_level"]) if need.get("ladder_level") in levels else 0
    late = now - need["due_at"]
    for index in range(current + 1, len(ladder)):
        if late >= timedelta(minutes=ladder[index]["after_minutes"]):
            actions.append(("supervise", ladder[index]["level"]))
    return actions


def next_rung_at(need: Doc, ladder: list[Doc], now: datetime) -> datetime | None:
    """When a late need's next rung of the ladder is due, after ``now``; None
    at the top of the ladder."""
    return min((need["due_at"] + timedelta(minutes=rung["after_minutes"]) for rung in ladder[1:]
                if need["due_at"] + timedelta(minutes=rung["after_minutes"]) > now), default=None)


def sweep_wanted(before: Doc | None, after: Doc, now: datetime) -> datetime | None:
    """When to ring the time-limit sweep's alarm after a write of a need (None:
    the write needs no ring): its due time while its clock runs, its
    evaluation deadline once resolved, and at once when it stops being
    overdue, so that the park's overdue count is counted again."""
    wanted = _wanted(after)
    if before is None:
        return wanted
    if is_overdue(before, now):
        # a late need's alarm follows its ladder, not its due time: ring, and at once if it
        # stopped being overdue
        return wanted if is_overdue(after, now) and after["due_at"] == before["due_at"] else now
    was = _wanted(before)
    # no sooner than before: the alarm rings by then already (rung for it, and a sweep settles
    # no later than any need's time limit or evaluation deadline ahead)
    return wanted if wanted is not None and (was is None or wanted < was) else None


def sweep_at(need: Doc) -> datetime:
    """When the time-limit sweep has something to do with ``need``: its due
    time while its clock runs (and from then on, while it is late), its
    evaluation deadline once resolved; NO_SWEEP otherwise. Kept on the need,
    so that a park's sweep reads its due needs, and the next time it is
    wanted, each as one range of one index."""
    return _wanted(need) or NO_SWEEP


def _wanted(need: Doc) -> datetime | None:
    if need["status"] in CLOCK_RUNNING:
        return need.get("due_at")
    if need["status"] == RESOLVED:
        return need.get("evaluation_due")
    return None


def evaluation_lapsed(need: Doc, now: datetime) -> bool:
    return need["status"] == RESOLVED and need.get("evaluation_due") is not None and need["evaluation_due"] <= now


# intake helpers --------------------------------------------------------------------
# Optional fields the submission gained after needs were first stored: left
# out of the digest while unset, so a request accepted before they existed
# still matches its retry after an upgrade (same key, same body → 200, not 409).
SUBMISSION_FIELDS_ADDED = ("zone",)


def submission_fingerprint(submission: Doc) -> str:
    return fingerprint({k: v for k, v in submission.items()
                        if not (k in SUBMISSION_FIELDS_ADDED and v is None)})


def requester_key(park_id: str, requester: Doc) -> str:
    """Who asked, as a digest: enough to find the same requester's needs
    without keeping another copy of their phone number or name."""
    who = requester.get("phone") or "{}|{}".format(requester.get("name", ""), requester.get("enterprise") or "")
    return hashlib.sha256("{}|{}".format(park_id, who).encode()).hexdigest()[:32]


def possible_duplicates(recent: Iterable[Doc], submission: Doc, now: datetime, window_hours: float) -> list[str]:
    """Needs of the same requester within the window, on the same item (or
    category), with similar words."""
    return [r["need_id"] for r in recent
            if now - r["at"] <= timedelta(hours=window_hours)
            and (r["item"] or r["category"]) == (submission["item"] or submission["category"])
            and similar(r["title"], submission["title"])]


def similar(a: str, b: str, threshold: float = 0.6) -> bool:
    """Text similarity good enough for short Chinese titles (character-level)."""
    return difflib.SequenceMatcher(None, a, b).ratio() >= threshold


# people are often named by surname and a form of address: 李师傅, 王女士, 赵同志
# whatever is left of a phone, ID or account number after masking
_LONG_NUMBER = re.compile(r"[0-9Xx*][0-9Xx* -]{5,}[0-9Xx*]")
_ADDRESSED = re.compile(r"[\u4e00-\u9fa5](?=(师傅|先生|女士|小姐|同志|老师|经理|工程师|阿姨|大爷|大妈|书记|主任))")


def public_title(title: str, requester: Doc) -> str:
    """The title as the echo wall shows it: phone and ID numbers masked, the
    requester's name and enterprise removed, people named by surname and form
    of address reduced to the form of address."""
    text = _LONG_NUMBER.sub("***", mask_string(title))
    for secret in (requester.get("name"), requester.get("enterprise")):
        if secret and len(secret) >= 2:
            text = text.replace(secret, "**")
    return _ADDRESSED.sub("*", text)


def public_summary(title: str) -> str:
    """The title as event subscribers may see it: phone and ID numbers masked."""
    return mask_string(title)


# the echo wall -------------------------------------------------------------------------
STATUS_LABELS = {
    SUBMITTED: "已受理", TRIAGED: "已分类分级", ASSIGNED: "已分派", IN_PROGRESS: "办理中",
    WAITING: "待补充信息", ESCALATED: "已上报协调", RESOLVED: "已办结，待评价", CLOSED: "已办结",
    REOPENED: "重新办理", REJECTED: "不属于受理范围，已转交", CANCELLED: "已撤销",
}


def wall_entry(need: Doc) -> Doc:
    """The public line of a need: built from an allow-list of fields, so
    nothing about the requester (name, phone, enterprise, details, internal
    notes, who handles it) can reach the wall."""
    evaluation = need.get("evaluation") or {}
    notes = []
    for entry in need["timeline"]:
        if entry.get("public_note") or entry["status"] != entry.get("from"):
            if entry["action"] in ("overdue", "supervise", "review"):
                continue
            notes.append({"at": entry["at"], "status": entry["status"],
                          "note": entry.get("public_note") or STATUS_LABELS[entry["status"]]})
    return {
        "need_id": need["need_id"], "version": need["version"],
        "public": bool(need["public"]) and need["status"] != CANCELLED,
        "title": need["public_title"], "kind": need["kind"], "category": need["category"], "item": need["item"],
        "status": need["status"], "submitted_at": need["submitted_at"], "due_at": need["due_at"],
        "resolved_at": need.get("resolved_at"), "closed_at": need.get("closed_at"),
        "rating": evaluation.get("rating"), "outcome": evaluation.get("outcome"),
        "redirect_to": (need.get("rejection") or {}).get("redirect_to"),
        "overdue_count": need["overdue_count"], "clock_running": need["status"] in CLOCK_RUNNING,
        "notes": notes[-20:], "updated_at": need["updated_at"],
    }


def wall_view(line: Doc, now: datetime, taxonomy: Taxonomy) -> Doc:
    """A wall line as a reader gets it: names of the taxonomy, days open,
    whether it is overdue right now."""
    end = line.get("closed_at") or line.get("resolved_at") or now
    item = taxonomy.items.get(line.get("item"))
    return {
        "need_id": line["need_id"], "title": line["title"], "kind": line["kind"],
        "category": line["category"], "category_name": taxonomy.categories.get(line["category"], {}).get("name"),
        "item": line.get("item"), "item_name": item[1]["name"] if item else None,
        "status": line["status"], "status_label": STATUS_LABELS[line["status"]],
        "submitted_at": line["submitted_at"].isoformat(), "due_at": line["due_at"].isoformat(),
        "days_open": max(0, (end - line["submitted_at"]).days),
        "overdue": bool(line["clock_running"] and line["due_at"] <= now),
        "was_overdue": line["overdue_count"] > 0,
        "rating": line.get("rating"), "outcome": line.get("outcome"), "redirect_to": line.get("redirect_to"),
        "notes": [{"at": n["at"].isoformat(), "status": n["status"], "note": n["note"]} for n in line["notes"]],
        "updated_at": line["updated_at"].isoformat(),
    }


# the three lists and statistics ----------------------------------------------------------
def numeric_fields(config: Config) -> dict[str, list[str]]:
    """{item code: [names of its integer and number fields]}: what a park
    reports in sums (Xuwei: 314 wage-arrears cases, 1,439 workers, 16.9 M
    yuan recovered)."""
    return {item["code"]: [f["name"] for f in item.get("fields", ()) if f["type"] in ("integer", "number")]
            for category in config["categories"] for item in category["items"]}


def field_totals(rows: Iterable[Doc], config: Config) -> dict[str, dict[str, dict[str, float]]]:
    """{item: {field: {"sum", "count"}}} over the needs ``rows`` (each with
    item and details): the sum of each numeric typed field and how many
    needs gave it."""
    numeric = numeric_fields(config)
    totals: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        names = numeric.get(row.get("item") or "") or ()
        details = row.get("details") or {}
        for name in names:
            value = details.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                slot = totals.setdefault(row["item"], {}).setdefault(name, {"sum": 0, "count": 0})
                slot["sum"] += value
                slot["count"] += 1
    return totals


def three_lists(config: Config, rows: list[Doc], resources: list[Doc], projects: list[Doc]) -> Doc:
    """``rows`` are the park's needs (category, item, status, details)."""
    by_item: dict[tuple[str, str | None], dict[str, int]] = {}
    for row in rows:
        key = (row["category"], row.get("item"))
        slot = by_item.setdefault(key, {"total": 0, "open": 0, "closed": 0})
        slot["total"] += 1
        slot["open" if row["status"] in OPEN else "closed"] += 1
    totals = field_totals(rows, config)
    needs_list = []
    for category in config["categories"]:
        for item in category["items"]:
            counted = by_item.pop((category["code"], item["code"]), {"total": 0, "open": 0, "closed": 0})
            served_by = [p["code"] for p in projects if item["code"] in p["items"]]
            needs_list.append(dict(counted, category=category["code"], category_name=category["name"],
                                   item=item["code"], item_name=item["name"], projects=served_by,
                                   fields=totals.get(item["code"], {})))
        unclassified = by_item.pop((category["code"], None), None)
        if unclassified:
            needs_list.append(dict(unclassified, category=category["code"], category_name=category["name"],
                                   item=None, item_name=None, projects=[], fields={}))
    return {"needs_list": needs_list, "resource_list": resources, "project_list": projects,
            "counts": {"items": sum(len(c["items"]) for c in config["categories"]),
                       "categories": len(config["categories"]), "resources": len(resources),
                       "projects": len(projects)}}


def statistics(rows: Iterable[Doc], now: datetime, config: Config | None = None) -> Doc:
    """Counts, time to resolve, overdue rate and satisfaction; with the
    park's ``config``, the sums of each item's numeric typed fields too."""
    rows = list(rows)
    by_status: dict[str, int] = {}
    by_category: dict[str, int] = {}
    by_grade: dict[str, int] = {}
    resolve_hours: list[float] = []
    ratings: list[int] = []
    fixed, overdue, total = 0, 0, 0
    by_item: dict[str, int] = {}
    for row in rows:
        total += 1
        if row.get("item"):
            by_item[row["item"]] = by_item.get(row["item"], 0) + 1
        for counter, key in ((by_status, row["status"]), (by_category, row["category"]), (by_grade, row["grade"])):
            counter[key] = counter.get(key, 0) + 1
        if row.get("resolved_at") is not None:
            spent = (row["resolved_at"] - row["submitted_at"]).total_seconds() - row.get("paused_seconds", 0)
            resolve_hours.append(spent / 3600)
        if row.get("overdue_count"):
            overdue += 1
        evaluation = row.get("evaluation") or {}
        if evaluation.get("rating"):
            ratings.append(evaluation["rating"])
            fixed += evaluation.get("outcome") == "fixed"
    totals = field_totals(rows, config) if config is not None else {}
    resolve_hours.sort()
    median = None
    if resolve_hours:
        mid = len(resolve_hours) // 2
        median = resolve_hours[mid] if len(resolve_hours) % 2 else (resolve_hours[mid - 1] + resolve_hours[mid]) / 2
    return {
        "total": total, "by_status": by_status, "by_category": by_category, "by_grade": by_grade,
        "open": sum(n for s, n in by_status.items() if s in OPEN),
        "median_hours_to_resolve": round(median, 3) if median is not None else None,
        "overdue_rate": round(overdue / total, 4) if total else None,
        "satisfaction": {"rated": len(ratings),
                         "mean_rating": round(sum(ratings) / len(ratings), 3) if ratings else None,
                         "fixed_share": round(fixed / len(ratings), 4) if ratings else None},
        "by_item": {item: {"needs": n, "fields": totals.get(item, {})} for item, n in sorted(by_item.items())}
        if config is not None else None,
        "as_of": now.isoformat(),
    }

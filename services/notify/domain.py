"""Notify: pure rules, no I/O.

A notice is one message to one recipient on one channel, keyed by (source,
recipient, channel): a duplicate delivery of the event, or a broadcast fanned
out again after a crash, writes nothing new. What happens to a notice is an
append-only delivery log (queued, deferred, sending, sent, failed, suppressed,
skipped, digested), never an update in place.

Which channels a notice takes: the in-app inbox always (it is silent, and it
is the record a person can come back to); then the recipient's push channels
in their order of preference — critical notices on all of them at once,
normal ones on the first, falling back to the next when a provider keeps
failing, low-priority ones batched into a daily digest on the first.

Quiet hours follow the recipient's roster: after a shift that runs through
the night the recipient sleeps ``sleep_hours`` from ``settle_minutes`` after
it ends; on a night without such a shift the park's night window applies;
nobody is quiet while on shift. A push channel that would wake someone
(``wakes``) waits until the window closes; critical notices go at once.
"""
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from hashlib import sha256
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, Template, TemplateError, pass_context
from jinja2.sandbox import SandboxedEnvironment

from lamplight.errors import DomainError
from lamplight.shapes import Config, Doc

INAPP = "inapp"
PUSH_CHANNELS = ("wechat", "sms", "email", "webhook")
CHANNELS = (INAPP,) + PUSH_CHANNELS
# a phone buzzing wakes a sleeper; a mail or a department system's webhook does not
WAKES = frozenset({"wechat", "sms"})
LOCALES = ("zh-CN", "en")
PRIORITIES = ("critical", "normal", "low")
RANK = {p: i for i, p in enumerate(PRIORITIES)}
TOPICS = ("tasks", "needs", "supervision", "points", "visits", "emergency", "broadcast", "digest")
ROLES = ("park_admin", "supervisor", "dispatcher")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Span = tuple[datetime, datetime]  # [start, end)

# a shift that covers any part of 00:00-05:00 is a night shift: its worker sleeps by day
NIGHT_CORE = (time(0, 0), time(5, 0))


class NotifyRuleError(DomainError):
    """What the notify rules refuse: a template that does not parse or render
    (lamplight.errors.DomainError, bad input)."""


@dataclass(frozen=True)
class Rule:
    """Who an event concerns and how much it matters."""

    audience: str  # responder | requester_and_followers | member | role:<role> | park
    topic: str
    priority: str


RULES = {
    "task.offered": Rule("responder", "tasks", "normal"),
    "emergency.called_out": Rule("responder", "emergency", "critical"),
    "emergency.declared": Rule("park", "emergency", "critical"),
    "visit.scheduled": Rule("responder", "visits", "low"),
    "visit.missed": Rule("responder", "visits", "normal"),
    "visit.escalated": Rule("visit_escalation", "supervision", "normal"),
    "need.triaged": Rule("requester_and_followers", "needs", "normal"),
    "need.assigned": Rule("requester_and_followers", "needs", "low"),
    "need.resolved": Rule("requester_and_followers", "needs", "normal"),
    "need.rejected": Rule("requester_and_followers", "needs", "normal"),
    "need.closed": Rule("requester_and_followers", "needs", "low"),
    "need.supervision_raised": Rule("supervision", "supervision", "normal"),
    "points.threshold_crossed": Rule("member", "points", "normal"),
    "points.credited": Rule("member", "points", "low"),
}
# what each kind of notice is rendered from, besides the event types above
BROADCAST = "broadcast"
DIGEST = "digest"
TEMPLATE_KEYS = tuple(RULES) + (BROADCAST, DIGEST)

_WHEN = "{{ due_at | when }}"
DEFAULT_TEMPLATES = {
    ("task.offered", "zh-CN"): ("新的服务任务",
                                "有一项需求等您认领：{{ summary }}（类别：{{ category }}，办理时限：" + _WHEN + "）。"),
    ("task.offered", "en"): ("New task offered", "A need is waiting for you: {{ summary }} (category {{ category }}, "
                             "due " + _WHEN + ")."),
    ("emergency.called_out", "zh-CN"): ("紧急召集", "{{ message }} 请尽快回复能否到场。"),
    ("emergency.called_out", "en"): ("Emergency call-out", "{{ message }} Please reply whether you can come."),
    ("emergency.declared", "zh-CN"): ("紧急通知", "园区进入应急状态：{{ reason }}。请听从指挥，注意安全。"),
    ("emergency.declared", "en"): ("Emergency", "The park is in emergency mode: {{ reason }}. Follow instructions "
                                   "and stay safe."),
    ("visit.scheduled", "zh-CN"): ("本月走访安排", "请在 {{ month }} 内走访 {{ household }}（{{ kind }}）。"),
    ("visit.scheduled", "en"): ("Visit this month", "Please visit {{ household }} ({{ kind }}) during {{ month }}."),
    ("visit.missed", "zh-CN"): ("走访未完成", "{{ month }} 对 {{ household }} 的走访未完成，已按规则记录。"),
    ("visit.missed", "en"): ("Visit missed", "The {{ month }} visit to {{ household }} was not made and has been "
                             "recorded."),
    ("visit.escalated", "zh-CN"): ("走访未完成督办", "{{ month }} 对 {{ household }}（{{ kind }}）的走访未按时完成，"
                                   "请督促落实。"),
    ("visit.escalated", "en"): ("Missed visit to follow up", "The {{ month }} visit to {{ household }} ({{ kind }}) "
                                "was not made in time: please see that it is."),
    ("need.triaged", "zh-CN"): ("诉求已受理", "您反映的「{{ summary }}」已受理，办理时限 " + _WHEN + "。"),
    ("need.triaged", "en"): ("Your need is accepted", "「{{ summary }}」 is accepted and due " + _WHEN + "."),
    ("need.assigned", "zh-CN"): ("诉求已分派", "「{{ summary }}」已交由{{ unit or team or '承办人' }}办理。"),
    ("need.assigned", "en"): ("Your need is assigned", "「{{ summary }}」 is with {{ unit or team or 'a handler' }}."),
    ("need.resolved", "zh-CN"): ("诉求已办结",
                                 "「{{ summary }}」已办结{% if public_note %}：{{ public_note }}{% endif %}。"
                                 "请对办理结果进行评价。"),
    ("need.resolved", "en"): ("Your need is resolved", "「{{ summary }}」 is resolved{% if public_note %}: "
                              "{{ public_note }}{% endif %}. Please rate the result."),
    ("need.rejected", "zh-CN"): ("诉求未予受理",
                                 "「{{ summary }}」未予受理{% if redirect_to %}，请联系{{ redirect_to }}"
                                 "{% endif %}。"),
    ("need.rejected", "en"): ("Your need was not taken", "「{{ summary }}」 was not taken{% if redirect_to %}; "
                              "please contact {{ redirect_to }}{% endif %}."),
    ("need.closed", "zh-CN"): ("诉求已关闭", "「{{ summary }}」已关闭，感谢您的反馈。"),
    ("need.closed", "en"): ("Your need is closed", "「{{ summary }}」 is closed. Thank you."),
    ("need.supervision_raised", "zh-CN"): ("督办提醒", "「{{ summary }}」已超过办理时限，升级至{{ level }}督办。"),
    ("need.supervision_raised", "en"): ("Supervision raised",
                                        "「{{ summary }}」 is past due and raised to {{ level }}."),
    ("points.threshold_crossed", "zh-CN"): ("积分预警",
                                            "您本年度积分余额为 {{ balance }} 分（{{ level }}），请及时关注。"),
    ("points.threshold_crossed", "en"): ("Points warning", "Your points balance this year is {{ balance }} "
                                         "({{ level }})."),
    ("points.credited", "zh-CN"): ("积分到账", "获得 {{ amount }} 分，当前余额 {{ balance_after }} 分。"),
    ("points.credited", "en"): ("Points credited", "{{ amount }} points credited; balance {{ balance_after }}."),
    (BROADCAST, "zh-CN"): ("{{ title }}", "{{ body }}"),
    (BROADCAST, "en"): ("{{ title }}", "{{ body }}"),
    (DIGEST, "zh-CN"): ("今日汇总（{{ items | length }} 条）",
                        "{% for item in items %}{{ loop.index }}. {{ item.title }}：{{ item.body }}\n{% endfor %}"),
    (DIGEST, "en"): ("Today's digest ({{ items | length }})",
                     "{% for item in items %}{{ loop.index }}. {{ item.title }}: {{ item.body }}\n{% endfor %}"),
}

# the data a template is checked against when saved and previewed by default
EXAMPLES: dict[str, dict[str, Any]] = {
    "task.offered": {"task_id": "need_01:task:1", "need_id": "need_01", "category": "daily_life",
                     "summary": "宿舍楼下篮球场的灯坏了", "due_at": "2026-11-21T10:00:00+00:00", "grade": "routine",
                     "responder_id": "rsp_01", "reason": "offer", "round": 1},
    "emergency.called_out": {"callout_id": "co_01", "responder_id": "rsp_01", "message": "北区仓库进水，请带沙袋到场。",
                             "why": "squad", "at": "2026-11-21T10:00:00+00:00"},
    "emergency.declared": {"mode": "emergency", "reason": "暴雨红色预警", "actor": "desk-1", "version": 2,
                           "at": "2026-11-21T10:00:00+00:00"},
    "visit.scheduled": {"visit_id": "v_01", "household": "H-001", "kind": "difficulty", "month": "2026-11",
                        "status": "scheduled", "responder_id": "rsp_01"},
    "visit.missed": {"visit_id": "v_01", "household": "H-001", "kind": "difficulty", "month": "2026-10",
                     "status": "missed", "responder_id": "rsp_01"},
    "visit.escalated": {"visit_id": "v_01", "household": "H-001", "kind": "difficulty", "month": "2026-10",
                        "status": "missed", "responder_id": "rsp_01", "level": "lead", "to": ["rsp_02"]},
    "need.supervision_raised": {"need_id": "need_01", "summary": "工资拖欠三个月", "level": "supervisor",
                                "status": "triaged", "due_at": "2026-11-21T10:00:00+00:00"},
    "points.threshold_crossed": {"member_id": "M-01", "year": 2026, "threshold": 6, "level": "red_warning",
                                 "balance": 6, "entry_id": "e_01"},
    "points.credited": {"member_id": "M-01", "amount": 2, "balance_after": 14, "entry_id": "e_02"},
    BROADCAST: {"title": "红色广播", "body": "新政策：园区职工子女入学登记本周五截止。"},
    DIGEST: {"items": [{"title": "积分到账", "body": "获得 2 分，当前余额 14 分。"},
                       {"title": "本月走访安排", "body": "请在 2026-11 内走访 H-001。"}]},
}
_NEED_EXAMPLE = {"need_id": "need_01", "summary": "宿舍楼下篮球场的灯坏了", "status": "triaged", "team": "orange",
                 "unit": None, "due_at": "2026-11-21T10:00:00+00:00", "public_note": "已更换灯泡",
                 "redirect_to": "劳动监察大队", "category": "daily_life", "level": None}
for _type in RULES:
    if _type.startswith("need.") and _type not in EXAMPLES:
        EXAMPLES[_type] = _NEED_EXAMPLE

TITLE_MAX = 100
BODY_MAX = 2000


# templates ---------------------------------------------------------------------------
@pass_context
def _when(context: Any, value: Any) -> str:
    """An ISO time (or datetime) as the park's local 'MM-DD HH:MM'."""
    if not value:
        return ""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    tz = context.get("_tz") or timezone.utc
    return at.astimezone(tz).strftime("%m-%d %H:%M")


# sandboxed: a park admin's template can read the data it is given and nothing else
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_ENV.filters["when"] = _when
# compiled templates kept per process: the defaults and every park's saved
# ones (each park has a handful of kinds and locales)
TEMPLATES_KEPT = 4096


@lru_cache(maxsize=TEMPLATES_KEPT)
def _compiled(source: str) -> Template:
    # parsing and compiling a template again for every notice was a quarter of
    # notify's busy time under ./dev bench; a Template renders safely from many threads
    return _ENV.from_string(source)


def compile_template(title: str, body: str) -> dict[str, Template]:
    """Parse both parts; raises NotifyRuleError naming the part that fails."""
    compiled: dict[str, Template] = {}
    for part, source in (("title", title), ("body", body)):
        try:
            compiled[part] = _compiled(source)
        except TemplateError as exc:
            raise NotifyRuleError("the {} does not parse: {}".format(part, exc), {part: [str(exc)]})
    return compiled


def render(title: str, body: str, data: dict[str, Any], tz: tzinfo = timezone.utc) -> tuple[str, str]:
    """(title, body) filled from ``data``; NotifyRuleError names the part
    that fails (a variable the data lacks, a forbidden attribute, …)."""
    compiled = compile_template(title, body)
    out = {}
    for part, template in compiled.items():
        try:
            text = template.render(dict(data, _tz=tz)).strip()
        except Exception as exc:  # sandbox violations, undefined names, filters on bad values
            raise NotifyRuleError("the {} does not render: {}: {}".format(part, type(exc).__name__, exc),
                                  {part: ["{}: {}".format(type(exc).__name__, exc)]})
        limit = TITLE_MAX if part == "title" else BODY_MAX
        out[part] = text[:limit]
    return out["title"], out["body"]


def check_template(key: str, title: str, body: str) -> tuple[str, str]:
    """A template is refused when saved, not when sent: it must render the
    example of its kind and give a non-empty title and body."""
    if key not in TEMPLATE_KEYS:
        raise NotifyRuleError("no notices of kind {}".format(key), {"key": ["one of " + ", ".join(TEMPLATE_KEYS)]})
    rendered_title, rendered_body = render(title, body, EXAMPLES.get(key, {}))
    if not rendered_title:
        raise NotifyRuleError("the title renders empty", {"title": ["renders empty"]})
    if not rendered_body:
        raise NotifyRuleError("the body renders empty", {"body": ["renders empty"]})
    return rendered_title, rendered_body


def template_for(key: str, locale: str, overrides: dict[Any, Any]) -> tuple[str, str]:
    """The park's own template for (key, locale), else the default; a locale
    without one falls back to zh-CN."""
    for loc in (locale, "zh-CN"):
        if (key, loc) in overrides:
            return overrides[(key, loc)]
        if (key, loc) in DEFAULT_TEMPLATES:
            return DEFAULT_TEMPLATES[(key, loc)]
    raise KeyError(key)


# quiet hours ---------------------------------------------------------------------------
def zone(name: str) -> ZoneInfo:
    """A configuration's time zone (checked when the configuration was saved)."""
    return ZoneInfo(name)


def parse_clock(value: str) -> time:
    parts = [int(p) for p in value.split(":")]
    return time(parts[0], parts[1], parts[2] if len(parts) > 2 else 0)


def _occurrences(shifts: list[Doc], first_day: date, last_day: date, tz: tzinfo) -> list[Span]:
    """Each shift as concrete [start, end) datetimes on the days between."""
    out: list[Span] = []
    day = first_day
    while day <= last_day:
        for shift in shifts:
            if DAYS.index(shift["day"]) != day.weekday():
                continue
            start = datetime.combine(day, parse_clock(shift["start"]), tz)
            end_day = day + timedelta(days=1) if shift.get("overnight") else day
            end = datetime.combine(end_day, parse_clock(shift["end"]), tz)
            if end > start:
                out.append((start, end))
        day += timedelta(days=1)
    return out


def _is_night(start: datetime, end: datetime, tz: tzinfo) -> bool:
    for day in (start.date(), start.date() + timedelta(days=1)):
        core_start = datetime.combine(day, NIGHT_CORE[0], tz)
        core_end = datetime.combine(day, NIGHT_CORE[1], tz)
        if start < core_end and end > core_start:
            return True
    return False


def quiet_windows(at: datetime, shifts: list[Doc], quiet: Doc, tz: tzinfo) -> tuple[list[Span], list[Span]]:
    """The sleep windows near ``at`` and the shifts near it, as datetimes."""
    local = at.astimezone(tz)
    occurrences = _occurrences(shifts, local.date() - timedelta(days=2), local.date() + timedelta(days=2), tz)
    settle = timedelta(minutes=quiet["settle_minutes"])
    sleep = timedelta(hours=quiet["sleep_hours"])
    nights = [(s, e) for s, e in occurrences if _is_night(s, e, tz)]
    windows = [(e + settle, e + settle + sleep) for _, e in nights]
    night_start, night_end = parse_clock(quiet["night"]["start"]), parse_clock(quiet["night"]["end"])
    for offset in (-1, 0, 1):
        day = local.date() + timedelta(days=offset)
        start = datetime.combine(day, night_start, tz)
        end = datetime.combine(day + timedelta(days=1) if night_end <= night_start else day, night_end, tz)
        if not any(s < end and e > start for s, e in nights):  # a night at work is no night asleep
            windows.append((start, end))
    return windows, occurrences


def quiet_until(at: datetime, shifts: list[Doc], quiet: Doc, tz: tzinfo) -> datetime | None:
    """When the quiet window holding ``at`` ends, or None if ``at`` is not quiet."""
    windows, occurrences = quiet_windows(at, shifts, quiet, tz)
    if any(s <= at < e for s, e in occurrences):
        return None  # at work, so awake
    covering = [w for w in windows if w[0] <= at < w[1]]
    if not covering:
        return None
    until = max(e for _, e in covering)
    grown = True
    while grown:  # windows that overlap make one longer rest
        grown = False
        for s, e in windows:
            if s <= until < e:
                until, grown = e, True
    next_shift = min((s for s, _ in occurrences if s > at), default=None)
    if next_shift is not None and next_shift < until:
        until = next_shift
    return until.astimezone(timezone.utc)


def next_digest_at(at: datetime, digest_clock: str, shifts: list[Doc], quiet: Doc, tz: tzinfo) -> datetime:
    """The first digest time after ``at`` (the park's local clock time),
    moved past the recipient's quiet window if it falls in one."""
    local = at.astimezone(tz)
    candidate = datetime.combine(local.date(), parse_clock(digest_clock), tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), parse_clock(digest_clock), tz)
    return quiet_until(candidate, shifts, quiet, tz) or candidate.astimezone(timezone.utc)


# notices and their planning ------------------------------------------------------------
def notice_id(source_id: str, recipient_id: str, channel: str) -> str:
    return "{}:{}:{}".format(source_id, recipient_id, channel)


def delivery_id(nid: str, step: str) -> str:
    return "{}#{}".format(nid, step)


def backoff_seconds(attempt: int, base: float, cap: float = 300.0) -> float:
    """Seconds before retry ``attempt`` + 1 (attempt counts from 1), doubling."""
    return min(cap, base * (2 ** (attempt - 1)))


def default_profile(recipient_id: str) -> Doc:
    """A person notify knows only by id: the in-app inbox, in Chinese."""
    return {"_id": recipient_id, "locale": "zh-CN", "channels": [], "addresses": {}, "opted_out": [],
            "shifts": [], "known": False}


def push_channels(profile: Doc, config: Config) -> tuple[list[str], list[tuple[str, str]]]:
    """The recipient's push channels in their order, with the reason each
    one that cannot be used is skipped."""
    usable: list[str] = []
    skipped: list[tuple[str, str]] = []
    for channel in profile.get("channels", []):
        if channel == INAPP:
            continue
        if not (profile.get("addresses") or {}).get(channel):
            skipped.append((channel, "recipient has no {} address".format(channel)))
        elif not (config.get("channels") or {}).get(channel):
            skipped.append((channel, "channel {} is not configured for park {}".format(channel, config["park_id"])))
        else:
            usable.append(channel)
    return usable, skipped


def record(nid: str, step: str, status: str, at: datetime, notice: Doc, **extra: Any) -> Doc:
    """One line of the delivery log."""
    return dict({"_id": delivery_id(nid, step), "notice_id": nid, "status": status, "at": at,
                 "recipient_id": notice["recipient_id"], "channel": notice["channel"],
                 "source_id": notice["source_id"], "type": notice["type"]}, **extra)


def new_notice(source: Doc, recipient_id: str, channel: str, title: str, body: str, locale: str, at: datetime,
               fallback_of: str | None = None) -> Doc:
    nid = notice_id(source["id"], recipient_id, channel)
    return {"_id": nid, "recipient_id": recipient_id, "channel": channel, "type": source["type"],
            "topic": source["topic"], "priority": source["priority"], "subject": source.get("subject"),
            "source_id": source["id"], "title": title, "body": body, "locale": locale, "created_at": at,
            "read": False, "shown": channel == INAPP, "fallback_of": fallback_of}


def pending_for(notice: Doc, due_at: datetime, attempt: int, remaining: Iterable[str], kind: str = "send") -> Doc:
    return {"_id": notice["_id"], "channel": notice["channel"], "recipient_id": notice["recipient_id"],
            "rank": RANK[notice["priority"]], "due_at": due_at, "attempt": attempt, "remaining": list(remaining),
            "kind": kind}


def plan(source: Doc, profile: Doc, rendered: tuple[str, str], config: Config, now: datetime,
         tz: tzinfo) -> tuple[list[Doc], list[Doc], list[Doc]]:
    """What one source (an event or a broadcast) does for one recipient:
    (notices, delivery records, pending sends). ``rendered`` is (title,
    body) in the recipient's locale."""
    title, body = rendered
    rid = profile["_id"]
    locale = profile.get("locale", "zh-CN")
    critical = source["priority"] == "critical"
    notices: list[Doc] = []
    records: list[Doc] = []
    pending: list[Doc] = []
    if not critical and source["topic"] in profile.get("opted_out", ()):
        notice = new_notice(source, rid, INAPP, title, body, locale, now)
        notice["shown"] = False
        return [notice], [record(notice["_id"], "suppressed", "suppressed", now, notice,
                                 reason="recipient opted out of topic {}".format(source["topic"]))], []
    inbox = new_notice(source, rid, INAPP, title, body, locale, now)
    notices.append(inbox)
    records.append(record(inbox["_id"], "sent", "sent", now, inbox))
    usable, skipped = push_channels(profile, config)
    if source.get("channels"):  # a broadcast may keep to some channels
        usable = [c for c in usable if c in source["channels"]]
    for channel, reason in skipped:
        if source.get("channels") and channel not in source["channels"]:
            continue
        notice = new_notice(source, rid, channel, title, body, locale, now)
        notice["skipped"] = True
        notices.append(notice)
        records.append(record(notice["_id"], "skipped", "skipped", now, notice, reason=reason))
    if not usable:
        return notices, records, pending
    chosen = usable if critical else usable[:1]
    for channel in chosen:
        notice = new_notice(source, rid, channel, title, body, locale, now)
        remaining = [] if critical else usable[1:]
        notices.append(notice)
        if source["priority"] == "low":
            due = next_digest_at(now, config["digest"]["at"], profile.get("shifts", []), config["quiet"], tz)
            pending.append(pending_for(notice, due, 1, remaining, kind="digest"))
            records.append(record(notice["_id"], "queued", "queued", now, notice, until=due,
                                  reason="batched into the digest"))
            continue
        until = None
        if channel in WAKES and not critical:
            until = quiet_until(now, profile.get("shifts", []), config["quiet"], tz)
        if until is not None:
            pending.append(pending_for(notice, until, 1, remaining))
            records.append(record(notice["_id"], "deferred", "deferred", now, notice, until=until,
                                  reason="quiet hours"))
        else:
            pending.append(pending_for(notice, now, 1, remaining))
            records.append(record(notice["_id"], "queued", "queued", now, notice))
    return notices, records, pending


def fallback(notice: Doc, remaining: list[str], now: datetime) -> tuple[Doc, Doc, Doc]:
    """The notice on the next channel after ``notice``'s kept failing."""
    channel, rest = remaining[0], remaining[1:]
    source = {"id": notice["source_id"], "type": notice["type"], "topic": notice["topic"],
              "priority": notice["priority"], "subject": notice.get("subject")}
    nxt = new_notice(source, notice["recipient_id"], channel, notice["title"], notice["body"], notice["locale"],
                     now, fallback_of=notice["_id"])
    return nxt, pending_for(nxt, now, 1, rest), record(nxt["_id"], "queued", "queued", now, nxt,
                                                       reason="fallback from {}".format(notice["channel"]))


def digest_source(recipient_id: str, channel: str, due_at: datetime) -> Doc:
    """The source of one recipient's digest: one per recipient, channel and digest time."""
    stamp = due_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return {"id": "digest-{}".format(stamp), "type": DIGEST, "topic": "digest", "priority": "normal",
            "subject": recipient_id}


def broadcast_id(park_id: str, key: str) -> str:
    return "bc_" + sha256("{}\n{}".format(park_id, key).encode()).hexdigest()[:20]


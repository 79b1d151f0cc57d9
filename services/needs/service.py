"""The needs service: the intake desk of a service centre.

Intake from every channel (and a liaison meeting's minutes in one batch),
classification against the park's own taxonomy, the lifecycle state machine,
time limits with a supervision ladder, the public echo wall, the requester's
evaluation and the three lists.
"""
import time
from collections import defaultdict
from datetime import timezone

from eventlet.semaphore import Semaphore
from nameko.timer import timer

from lamplight import failpoints, settings
from lamplight.consuming import subscribe
from lamplight.errors import BadInput, Conflict, NotFound, code_or_reject, load_or_reject, time_or_reject
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch, editable, plain
from lamplight.publishing import EventOutbox
from lamplight.rpc import rpc
from lamplight.shapes import shown
from lamplight.storage import Mongo, check_park_id
from services.needs import domain, handlers
from services.needs.metrics import NEEDS_OPEN, NEEDS_OVERDUE, NEEDS_SKIPPED_EVENTS
from services.needs.schemas import (
    COMMAND_SCHEMAS,
    BatchSchema,
    FollowSchema,
    NeedChangedSchema,
    NeedFollowedSchema,
    NeedsConfigSchema,
    NeedSubmissionSchema,
    NeedSubmittedSchema,
    NeedViewSchema,
    ProjectSchema,
    ResourceSchema,
    TaskEventSchema,
    WallEntryChangedSchema,
)
from services.needs.store import INDEXES, NeedsStore, parks_with_config, utcnow

SYSTEM = "system"
SWEEP_BATCH = 500
_submission = NeedSubmissionSchema()
_batch = BatchSchema()
_config = NeedsConfigSchema()
_view = NeedViewSchema()
_submitted = NeedSubmittedSchema()
_changed = NeedChangedSchema()
_followed = NeedFollowedSchema()
_wall_event = WallEntryChangedSchema()
_follow = FollowSchema()
_resource = ResourceSchema()
_project = ProjectSchema()
_task_event = TaskEventSchema()


class NeedsService:
    name = "needs"

    log = Observability()
    configs = ConfigWatch()  # keeps this process's cache of park configurations true
    db = Mongo(indexes=INDEXES, group_commit=("needs",))
    events = EventOutbox(collections=("needs", "followers"))

    # one sweep per interval per worker class, the first one interval after start
    _last_sweep = time.monotonic()

    # configuration ------------------------------------------------------------------
    @subscribe("gateway", "park.configured")
    def on_park_configured(self, envelope):
        """The needs section of a park's configuration, installed as the next
        version; an older park version arriving late changes nothing."""
        data = envelope["data"]
        section = data["sections"].get("needs")
        if section is not None:
            NeedsStore(self.db, envelope["parkid"]).park_config.project(
                dict(section, name=data["name"]), data["version"],
                lambda body: load_or_reject(_config, body, "the needs section of park.configured"))

    @rpc
    def set_config(self, park_id, payload):
        """Install the park's taxonomy, grades and supervision rules as the
        next version (the body's ``version`` is the current version + 1)."""
        check_park_id(park_id)
        config = load_or_reject(_config, editable(payload), "the needs configuration")
        version, unchanged = NeedsStore(self.db, park_id).park_config.install(config)
        if unchanged:  # the same configuration again changes nothing
            return {"park_id": park_id, "version": version, "unchanged": True}
        return {"park_id": park_id, "version": version, "unchanged": False,
                "categories": len(config["categories"]),
                "items": sum(len(c["items"]) for c in config["categories"]), "grades": len(config["grades"])}

    @rpc
    def config(self, park_id):
        return plain(self._taxonomy(NeedsStore(self.db, park_id)).config)

    def _taxonomy(self, store):
        return domain.Taxonomy(store.park_config.require())

    def _work(self, store):
        return handlers.Work(store, self.events, self.log)

    # intake -----------------------------------------------------------------------------
    @rpc
    def submit(self, park_id, payload, idempotency_key=None):
        """Accept a need. The same idempotency key with the same body returns
        the need already accepted; with another body it is a Conflict."""
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        submission = handlers.validate(taxonomy, store, load_or_reject(_submission, payload, "the need"), "the need")
        need, created = handlers.accept(self._work(store), taxonomy, submission, idempotency_key)
        if created:
            failpoints.hit("needs.submit.after_write")
        return dict(_view.dump(need), created=created)

    @rpc
    def submit_batch(self, park_id, payload, idempotency_key):
        """The needs of one liaison meeting from its minutes. Every need is
        validated before any is written; each has the key ``<key>#<n>``, so
        sending the batch again (after a timeout, say) adds nothing twice."""
        if not idempotency_key:
            raise BadInput("a batch needs an Idempotency-Key", {"Idempotency-Key": ["required for a batch"]})
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        batch = load_or_reject(_batch, payload, "the batch")
        submissions, errors = [], {}
        for n, raw in enumerate(batch["needs"]):
            raw = dict({"channel": "liaison_meeting", "entered_by": batch["entered_by"]}, **raw)
            try:
                what = "need {}".format(n)
                submissions.append(handlers.validate(taxonomy, store, load_or_reject(_submission, raw, what), what))
            except (BadInput, domain.UnknownCode) as exc:
                errors[str(n)] = exc.fields
        if errors:
            raise BadInput("{} of {} needs in the batch are not valid; nothing was written".format(
                len(errors), len(batch["needs"])), {"needs": errors})
        meeting = dict(batch["meeting"], held_on=batch["meeting"]["held_on"].isoformat())
        results = [handlers.accept(self._work(store), taxonomy, s, "{}#{}".format(idempotency_key, n), meeting)
                   for n, s in enumerate(submissions)]
        return {"meeting": meeting, "needs": [dict(_view.dump(need), created=created) for need, created in results],
                "created": sum(1 for _, created in results if created)}

    @rpc
    def get(self, park_id, need_id):
        return _view.dump(handlers.need_of(NeedsStore(self.db, park_id), need_id))

    # the lifecycle ------------------------------------------------------------------------
    @rpc
    def act(self, park_id, need_id, action, payload):
        """One lifecycle command on a need: triage, assign, start, wait,
        resume, escalate, release, resolve, evaluate, reopen, reject, cancel,
        link_duplicate or review. An action the need's status does not allow
        is a Conflict naming the actions it does allow."""
        if action not in COMMAND_SCHEMAS:
            raise BadInput("unknown action {}".format(action), {"action": [
                "one of: " + ", ".join(COMMAND_SCHEMAS)]})
        command = load_or_reject(COMMAND_SCHEMAS[action], payload, "the {} command".format(action))
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        need = handlers.act(self._work(store), taxonomy, need_id, action, command)
        return _view.dump(need)

    # dispatch events move needs along -------------------------------------------------------
    @subscribe("volunteers", "task.claimed")
    def on_task_claimed(self, envelope):
        self._from_task(envelope, "assign", lambda need, task: need["status"] == domain.ASSIGNED
                        and need.get("task_id") == task["task_id"])

    @subscribe("volunteers", "task.started")
    def on_task_started(self, envelope):
        self._from_task(envelope, "start", lambda need, task: need["status"] != domain.ASSIGNED
                        or need.get("task_id") != task["task_id"])

    @subscribe("volunteers", "task.completed")
    def on_task_completed(self, envelope):
        self._from_task(envelope, "resolve", lambda need, task: need["status"] not in (
            domain.ASSIGNED, domain.IN_PROGRESS, domain.ESCALATED) or (
            need.get("task_id") not in (None, task["task_id"])))

    @subscribe("volunteers", "task.released")
    def on_task_released(self, envelope):
        self._from_task(envelope, "release", lambda need, task: need.get("task_id") != task["task_id"]
                        or need["status"] not in (domain.ASSIGNED, domain.IN_PROGRESS))

    def _from_task(self, envelope, action, already_or_moot):
        """Apply a dispatch event; a redelivery, or an event about a task the
        need has moved past, changes nothing (counted, not retried)."""
        park_id = envelope["parkid"]
        task = load_or_reject(_task_event, envelope["data"], "{} data".format(envelope["type"]))
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)

        def build(need):
            if already_or_moot(need, task):
                raise _Skip()
            args = {k: task[k] for k in ("responder_id", "member_id", "task_id") if task.get(k)}
            if action == "resolve":
                args["evaluation_days"] = taxonomy.config["evaluation_days"]
            return args

        try:
            handlers.transition(self._work(store), task["need_id"], action, build, "dispatch", task.get("note"))
        except (_Skip, NotFound):
            NEEDS_SKIPPED_EVENTS.labels(park_id, envelope["type"]).inc()
        except domain.IllegalTransition as exc:
            NEEDS_SKIPPED_EVENTS.labels(park_id, envelope["type"]).inc()
            self.log.warning("need.dispatch_event_skipped", need_id=task["need_id"], type=envelope["type"],
                             reason=str(exc))

    # time limits and supervision ---------------------------------------------------------------
    @timer(interval=1)
    def sweep_timer(self):
        interval = settings.get_float("NEEDS_SWEEP_INTERVAL_S")
        if time.monotonic() - NeedsService._last_sweep < interval:
            return
        NeedsService._last_sweep = time.monotonic()
        for park_id in parks_with_config(self.db):
            try:
                self._sweep(park_id)
            except Exception as exc:  # one park's trouble must not stop the others' sweep
                self.log.error("needs.sweep_failed", park_id=park_id, error=str(exc))

    @rpc
    def sweep(self, park_id):
        """Run the time-limit sweep of one park now (the timer runs it every
        NEEDS_SWEEP_INTERVAL_S for every park)."""
        return self._sweep(park_id)

    def _sweep(self, park_id):
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        now = utcnow()
        done = {"overdue": 0, "supervise": 0, "close_unevaluated": 0}
        for need in store.due_for_sweep(now, domain.CLOCK_RUNNING, SWEEP_BATCH):
            steps = [("close_unevaluated", None)] if domain.evaluation_lapsed(need, now) else \
                domain.supervision_due(need, taxonomy.ladder, now)
            for action, level in steps:
                try:
                    handlers.transition(self._work(store), need["need_id"], action,
                                     lambda current, level=level, action=action: _sweep_args(
                                         current, action, level, taxonomy, now), SYSTEM, None)
                    done[action] += 1
                except (_Skip, Conflict):
                    pass  # another replica's sweep, or a desk, got there first
        overdue = store.overdue_counts(utcnow(), domain.CLOCK_RUNNING)
        for category in taxonomy.categories:
            NEEDS_OVERDUE.labels(park_id, category).set(overdue.get(category, 0))
        if time.monotonic() - _OPEN_COUNTED.get(park_id, -1e9) >= settings.get_float("NEEDS_OPEN_GAUGE_S"):
            _OPEN_COUNTED[park_id] = time.monotonic()
            opened = store.open_counts(domain.OPEN)
            for category in taxonomy.categories:
                NEEDS_OPEN.labels(park_id, category).set(opened.get(category, 0))
        return done

    # the echo wall -----------------------------------------------------------------------------
    @subscribe("needs", "wall.entry_changed")
    def on_wall_entry_changed(self, envelope):
        """Project the public line; versions make any order of delivery end
        in the newest line."""
        entry = _wall_event.load(envelope["data"])
        store = NeedsStore(self.db, envelope["parkid"])
        if store.project_wall(entry):
            # one merge at a time per park in this process: concurrent workers would only
            # lose the head's compare-and-set to each other and retry
            with _HEAD_LOCKS[envelope["parkid"]]:
                store.merge_wall_head(entry)

    @rpc
    def wall(self, park_id, status=None, category=None, before=None, limit=20):
        """The public echo wall of a park, newest change first. The first
        page without filters is the park's head document and the lines it
        names; another page, or a head that changed while it was read, is a
        query of the wall."""
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        if status is not None and status not in domain.STATUSES:
            raise BadInput("unknown status {}".format(status), {"status": ["one of: " + ", ".join(domain.STATUSES)]})
        if category is not None:
            taxonomy.category(category)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise BadInput("limit is 1-100", {"limit": [str(limit)]})
        after_need = None
        if before is not None:
            # a page's next_before is "<time>~<need id>": lines changed at the
            # same millisecond (a liaison meeting's batch) are told apart by id,
            # so paging never skips one; a bare time is accepted too
            when, _, after_need = str(before).partition("~")
            before = time_or_reject(when, "before")
            after_need = after_need or None
        head = store.wall_head() if status is None and category is None and before is None else None
        lines = None
        if head is not None and (len(head["lines"]) >= limit or head["complete"]):
            lines = store.head_lines(head["lines"][:limit])
        if lines is None:
            lines = store.wall_page(status, category, before, limit, after_need)
        now = utcnow()
        last = lines[-1] if len(lines) == limit else None
        return {"park_id": park_id, "entries": [domain.wall_view(line, now, taxonomy) for line in lines],
                "next_before": _cursor(last) if last else None}

    @rpc
    def wall_entry(self, park_id, need_id):
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        line = store.wall_line(need_id)
        if line is None or not line["public"]:
            raise NotFound("no public need {} on the wall of {}".format(need_id, park_id), {"need_id": ["unknown"]})
        return domain.wall_view(line, utcnow(), taxonomy)

    @rpc
    def follow(self, park_id, need_id, payload, following=True):
        """A worker follows (or stops following) a public need to get its updates."""
        data = load_or_reject(_follow, payload, "the follower")
        store = NeedsStore(self.db, park_id)
        need = handlers.need_of(store, need_id)
        if not need["public"]:
            raise NotFound("no public need {} on the wall of {}".format(need_id, park_id), {"need_id": ["unknown"]})
        envelope = self.events.new("need.followed", park_id=park_id, subject=need_id, data=_followed.dump(
            {"need_id": need_id, "follower_id": data["follower_id"], "following": following}))
        with self.events.staging([envelope]) as staged:
            changed = staged.written = store.set_following(need_id, data["follower_id"], following, staged.update())
        return {"need_id": need_id, "follower_id": data["follower_id"], "following": following, "changed": changed}

    @rpc
    def followers(self, park_id, need_id):
        return NeedsStore(self.db, park_id).followers_of(need_id)

    # the three lists ----------------------------------------------------------------------------
    @rpc
    def put_resource(self, park_id, code, payload):
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        resource = load_or_reject(_resource, payload, "the resource")
        _check_items(taxonomy, resource["items"])
        return shown(store.put_listing("resources", code_or_reject(code), resource))

    @rpc
    def put_project(self, park_id, code, payload):
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        project = load_or_reject(_project, payload, "the service project")
        _check_items(taxonomy, project["items"])
        known = {r["code"] for r in store.listings("resources")}
        missing = [r for r in project["resources"] if r not in known]
        if missing:
            raise BadInput("unknown resources: " + ", ".join(missing), {"resources": [
                "unknown; this park's resources are: " + (", ".join(sorted(known)) or "none yet")]})
        return shown(store.put_listing("projects", code_or_reject(code), project))

    @rpc
    def lists(self, park_id):
        """The three lists of a park: needs by item, resources, service projects."""
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        return domain.three_lists(taxonomy.config, store.needs_by_item(),
                                  [shown(r) for r in store.listings("resources")],
                                  [shown(p) for p in store.listings("projects")])

    # statistics -------------------------------------------------------------------------------
    @rpc
    def statistics(self, park_id):
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        return dict(domain.statistics(store.statistics_rows(), utcnow(), taxonomy.config), park_id=park_id)


_HEAD_LOCKS = defaultdict(Semaphore)
# park -> when this process last counted its open needs (NEEDS_OPEN_GAUGE_S)
_OPEN_COUNTED = {}


def _cursor(line):
    """The next page's ``before``: UTC with a Z and the need id, nothing a URL
    mangles (a "+00:00" pasted into a query string arrives as " 00:00")."""
    at = line["updated_at"].astimezone(timezone.utc)
    return "{}Z~{}".format(at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3], line["need_id"])


class _Skip(Exception):
    """Nothing to do for this event or sweep step."""


def _sweep_args(need, action, level, taxonomy, now):
    # the sweep decided on a stale read: decide again on the need as it is now
    if action == "close_unevaluated":
        if not domain.evaluation_lapsed(need, now):
            raise _Skip()
        return {}
    steps = domain.supervision_due(need, taxonomy.ladder, now)
    if (action, level) not in steps:
        raise _Skip()
    return {"level": level}



def _check_items(taxonomy, items):
    missing = [i for i in items if i not in taxonomy.items]
    if missing:
        raise BadInput("unknown items: " + ", ".join(missing), {"items": [
            "unknown; this park's items are: " + ", ".join(sorted(taxonomy.items))]})


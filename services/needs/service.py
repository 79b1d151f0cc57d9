"""The needs service: the intake desk of a service centre.

Intake from every channel (and a liaison meeting's minutes in one batch),
classification against the park's own taxonomy, the lifecycle state machine,
time limits with a supervision ladder, the public echo wall, the requester's
evaluation and the three lists.
"""
import time

from lamplight import failpoints, settings
from lamplight.alarms import Alarms
from lamplight.consuming import subscribe
from lamplight.errors import BadInput, code_or_reject, load_or_reject
from lamplight.lanes import timer
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch, editable, plain
from lamplight.publishing import EventOutbox
from lamplight.rpc import rpc
from lamplight.storage import Mongo, check_park_id
from services.needs import domain, handlers
from services.needs.handlers import intake, lifecycle
from services.needs.handlers import lists as three_lists
from services.needs.handlers import wall as echo_wall
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
from services.needs.store import INDEXES, RETIRED_INDEXES, SWEEP_LOOP, NeedsStore, parks_with_config, utcnow

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
    db = Mongo(indexes=INDEXES, group_commit=("needs",), retired=RETIRED_INDEXES)
    events = EventOutbox(collections=("needs", "followers"))

    # one sweep per interval per worker class, the first one interval after start
    _last_sweep = time.monotonic()
    _last_round = -1e9  # when the sweep last rang every park's alarm
    _last_count = -1e9  # when the sweep last counted every park's open needs

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
        store = NeedsStore(self.db, park_id)
        version, unchanged = store.park_config.install(config)
        if unchanged:  # the same configuration again changes nothing
            return {"park_id": park_id, "version": version, "unchanged": True}
        store.alarm.ring(utcnow())  # the sweep looks again under the new ladder
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
        submission = intake.validate(taxonomy, store, load_or_reject(_submission, payload, "the need"), "the need")
        need, created = intake.accept(self._work(store), taxonomy, submission, idempotency_key)
        if created:
            failpoints.hit("needs.submit.after_write")
        return dict(_view.dump(need), created=created)

    @rpc
    def submit_batch(self, park_id, payload, idempotency_key):
        """The needs of one liaison meeting from its minutes, all validated
        before any is written; sending the batch again adds nothing twice."""
        if not idempotency_key:
            raise BadInput("a batch needs an Idempotency-Key", {"Idempotency-Key": ["required for a batch"]})
        store = NeedsStore(self.db, park_id)
        batch = load_or_reject(_batch, payload, "the batch")
        meeting, results = intake.accept_batch(self._work(store), self._taxonomy(store), batch, idempotency_key,
                                               lambda raw, what: load_or_reject(_submission, raw, what))
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
        return _view.dump(lifecycle.act(self._work(store), self._taxonomy(store), need_id, action, command))

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
        task = load_or_reject(_task_event, envelope["data"], "{} data".format(envelope["type"]))
        store = NeedsStore(self.db, envelope["parkid"])
        lifecycle.from_task(self._work(store), self._taxonomy(store), envelope, task, action, already_or_moot)

    # time limits and supervision ---------------------------------------------------------------
    @timer(interval=1)
    def sweep_timer(self):
        interval = settings.get_float("NEEDS_SWEEP_INTERVAL_S")
        if time.monotonic() - NeedsService._last_sweep < interval:
            return
        NeedsService._last_sweep = time.monotonic()
        alarms = Alarms(self.db, SWEEP_LOOP)
        if time.monotonic() - NeedsService._last_round >= settings.get_float("SWEEP_ROUND_S"):
            # a process's first sweep, then every SWEEP_ROUND_S: every park's alarm rung now, for
            # what no alarm was rung for (needs from before alarms, a ring lost with the process
            # that was to ring it)
            NeedsService._last_round = NeedsService._last_count = time.monotonic()
            for park_id in parks_with_config(self.db):
                alarms.ring(park_id, utcnow())
        elif time.monotonic() - NeedsService._last_count >= settings.get_float("NEEDS_OPEN_GAUGE_S"):
            # between rounds, every NEEDS_OPEN_GAUGE_S: each park's open needs counted, one read,
            # not a visit of the sweep (its due needs, overdue count and next due times); a need
            # cancelled or closed rings no alarm, and the count must still follow it
            NeedsService._last_count = time.monotonic()
            for park_id in parks_with_config(self.db):
                try:
                    store = NeedsStore(self.db, park_id)
                    lifecycle.count_open(store, self._taxonomy(store))
                except Exception as exc:  # one park's trouble must not stop the others' counts
                    self.log.error("needs.count_failed", park_id=park_id, error=str(exc))
        # only the parks whose alarm rang: a park with nothing due costs no read (lamplight.alarms)
        for park_id, version in sorted(alarms.rung(utcnow()).items()):
            try:
                store = NeedsStore(self.db, park_id)
                _, wanted = lifecycle.swept(self._work(store), self._taxonomy(store), SWEEP_BATCH)
                alarms.settle(park_id, version, wanted)
            except Exception as exc:  # one park's trouble must not stop the others' sweep
                self.log.error("needs.sweep_failed", park_id=park_id, error=str(exc))

    @rpc
    def sweep(self, park_id):
        """Run the time-limit sweep of one park now (the timer runs it every
        NEEDS_SWEEP_INTERVAL_S for every park)."""
        store = NeedsStore(self.db, park_id)
        return lifecycle.sweep(self._work(store), self._taxonomy(store), SWEEP_BATCH)

    # the echo wall -----------------------------------------------------------------------------
    @subscribe("needs", "wall.entry_changed")
    def on_wall_entry_changed(self, envelope):
        """Project the public line; versions make any order of delivery end
        in the newest line."""
        echo_wall.project(self._work(NeedsStore(self.db, envelope["parkid"])), _wall_event.load(envelope["data"]))

    @rpc
    def wall(self, park_id, status=None, category=None, before=None, limit=20):
        """The public echo wall of a park, newest change first."""
        store = NeedsStore(self.db, park_id)
        return echo_wall.page(self._work(store), self._taxonomy(store), status, category, before, limit)

    @rpc
    def wall_entry(self, park_id, need_id):
        store = NeedsStore(self.db, park_id)
        return echo_wall.entry(self._work(store), self._taxonomy(store), need_id)

    @rpc
    def follow(self, park_id, need_id, payload, following=True):
        """A worker follows (or stops following) a public need to get its updates."""
        data = load_or_reject(_follow, payload, "the follower")
        return echo_wall.follow(self._work(NeedsStore(self.db, park_id)), need_id, data["follower_id"], following)

    @rpc
    def followers(self, park_id, need_id):
        return NeedsStore(self.db, park_id).followers_of(need_id)

    # the three lists ----------------------------------------------------------------------------
    @rpc
    def put_resource(self, park_id, code, payload):
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        resource = load_or_reject(_resource, payload, "the resource")
        return three_lists.put_resource(self._work(store), taxonomy, code_or_reject(code), resource)

    @rpc
    def put_project(self, park_id, code, payload):
        store = NeedsStore(self.db, park_id)
        taxonomy = self._taxonomy(store)
        project = load_or_reject(_project, payload, "the service project")
        return three_lists.put_project(self._work(store), taxonomy, code_or_reject(code), project)

    @rpc
    def lists(self, park_id):
        """The three lists of a park: needs by item, resources, service projects."""
        store = NeedsStore(self.db, park_id)
        return three_lists.lists(self._work(store), self._taxonomy(store))

    # statistics -------------------------------------------------------------------------------
    @rpc
    def statistics(self, park_id):
        store = NeedsStore(self.db, park_id)
        return three_lists.statistics(self._work(store), self._taxonomy(store))

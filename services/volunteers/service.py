"""The volunteers service: the dispatch desk of a service centre.

Responders (volunteers and organisational units), colour teams and rosters;
dispatch of routed needs as tasks offered to the best K (the first claim
wins), direct assignment to a unit, the public wish list with self-service
claiming; offers that expire go to the next K, then to the team lead, and an
urgent need nobody claims at night pages the emergency squad. Visit plans
(the six must-visits) and emergency mode with call-outs.

This class decodes a call, hands it to the service layer (handlers/: one
module per subdomain) with the park's repository, and encodes the answer.
"""
import time

from lamplight import settings
from lamplight.alarms import Alarms
from lamplight.consuming import subscribe
from lamplight.errors import NotFound, code_or_reject, load_or_reject, time_or_reject
from lamplight.lanes import timer
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch, editable, plain
from lamplight.publishing import EventOutbox
from lamplight.rpc import rpc
from lamplight.shapes import shown
from lamplight.storage import Mongo, check_park_id
from services.volunteers.domain import rosters, visits
from services.volunteers.handlers import Work, dispatch, emergency, responder_of, responders
from services.volunteers.handlers import visits as visit_plans
from services.volunteers.schemas import (
    CalloutSchema,
    EmergencySwitchSchema,
    HouseholdSchema,
    NeedRoutedSchema,
    PauseSchema,
    ReplySchema,
    ResponderRegistrationSchema,
    ResponderViewSchema,
    RosterSchema,
    TaskActionSchema,
    TaskViewSchema,
    VisitProofSchema,
    VisitViewSchema,
    VolunteersConfigSchema,
    WishViewSchema,
)
from services.volunteers.store import INDEXES, PARTITIONED, SWEEP_LOOP, VolunteersStore, parks_with, utcnow

SWEEP_BATCH = 500
_config = VolunteersConfigSchema()
_registration = ResponderRegistrationSchema()
_responder_view = ResponderViewSchema()
_roster = RosterSchema()
_pause = PauseSchema()
_need_routed = NeedRoutedSchema()
_task_action = TaskActionSchema()
_task_view = TaskViewSchema()
_wish_view = WishViewSchema()
_household = HouseholdSchema()
_proof = VisitProofSchema()
_visit_view = VisitViewSchema()
_switch = EmergencySwitchSchema()
_callout = CalloutSchema()
_reply = ReplySchema()


class VolunteersService:
    name = "volunteers"

    log = Observability()
    configs = ConfigWatch()  # keeps this process's cache of park configurations true
    # concurrent workers' inserts share one request
    db = Mongo(indexes=INDEXES, partitioned=PARTITIONED, group_commit=("tasks",))
    events = EventOutbox(collections=("responders", "tasks", "visits", "callout_recipients", "parkstate"))

    _last_sweep = time.monotonic()
    _last_round = -1e9  # when the sweep last rang every park's alarm (SWEEP_ROUND_S)

    def _work(self, park_id):
        return Work(VolunteersStore(self.db, park_id), self.events, self.log)

    # configuration ------------------------------------------------------------------
    @subscribe("gateway", "park.configured")
    def on_park_configured(self, envelope):
        """The volunteers section of a park's configuration, installed as the next
        version; an older park version arriving late changes nothing."""
        data = envelope["data"]
        section = data["sections"].get("volunteers")
        if section is not None:
            VolunteersStore(self.db, envelope["parkid"]).park_config.project(
                section, data["version"],
                lambda body: load_or_reject(_config, body, "the volunteers section of park.configured"))

    @rpc
    def set_config(self, park_id, payload):
        """Install the park's teams, skills, zones and dispatch rules as the
        next version (the body's ``version`` is the current version + 1)."""
        check_park_id(park_id)
        config = load_or_reject(_config, editable(payload), "the volunteers configuration")
        store = VolunteersStore(self.db, park_id)
        version, unchanged = store.park_config.install(config)
        store.alarm.ring(utcnow())  # the sweep looks again under the new rules
        return {"park_id": park_id, "version": version, "unchanged": unchanged, "teams": len(config["teams"]),
                "skills": len(config["skills"]), "zones": len(config["zones"])}

    @rpc
    def config(self, park_id):
        return plain(self._work(park_id).config())

    # responders ----------------------------------------------------------------------
    @rpc
    def register_responder(self, park_id, payload):
        data = load_or_reject(_registration, payload, "the responder")
        responder, created = responders.register(self._work(park_id), data)
        return dict(_responder_view.dump(responder), created=created)

    @rpc
    def get_responder(self, park_id, responder_id):
        return _responder_view.dump(responder_of(VolunteersStore(self.db, park_id), responder_id))

    @rpc
    def set_roster(self, park_id, responder_id, payload):
        """Replace a responder's weekly shifts, leave and extra shifts."""
        roster = load_or_reject(_roster, payload, "the roster")
        return _responder_view.dump(responders.set_roster(self._work(park_id), responder_id, roster))

    @rpc
    def set_active(self, park_id, responder_id, payload):
        """Pause a responder (no offers while paused) or make them active again."""
        pause = load_or_reject(_pause, payload, "the pause")
        return _responder_view.dump(responders.set_active(self._work(park_id), responder_id, pause))

    @rpc
    def on_duty(self, park_id, at=None, team=None):
        """Who is on duty in the park at ``at`` (default now)."""
        return responders.on_duty(self._work(park_id), time_or_reject(at, "at") if at else None, team)

    # dispatch ------------------------------------------------------------------------------
    @subscribe("needs", "need.triaged")
    @subscribe("needs", "need.reopened")
    def on_need_routed(self, envelope):
        """A need routed to a team (triaged, re-triaged or reopened) becomes a
        task of its own: assigned to a unit, on the wish list, or offered."""
        need = load_or_reject(_need_routed, envelope["data"], envelope["type"] + " data")
        dispatch.dispatch(self._work(envelope["parkid"]), need)

    @subscribe("needs", "need.assigned")
    @subscribe("needs", "need.cancelled")
    @subscribe("needs", "need.rejected")
    def on_need_taken_elsewhere(self, envelope):
        """A need the desk assigned itself, cancelled or rejected: its open
        task is withdrawn, and whoever had it offered or held hears so."""
        need = load_or_reject(_need_routed, envelope["data"], envelope["type"] + " data")
        dispatch.withdraw(self._work(envelope["parkid"]), need, envelope["type"])

    # claiming and the task lifecycle ---------------------------------------------------------
    @rpc
    def act(self, park_id, task_id, action, payload):
        """claim, decline, start, complete, release, request_takeover or
        answer_takeover, by the responder named in the body."""
        action = dispatch.action_of(action)
        command = load_or_reject(_task_action, payload, "the {} command".format(action))
        return _task_view.dump(dispatch.act(self._work(park_id), task_id, action, command))

    @rpc
    def get_task(self, park_id, task_id):
        return _task_view.dump(dispatch.task_of(VolunteersStore(self.db, park_id), task_id))

    @rpc
    def tasks_of(self, park_id, responder_id):
        """What a responder holds and what is offered to them now."""
        work = self._work(park_id)
        responder_of(work.store, responder_id)
        held, offered = dispatch.tasks_of(work, responder_id)
        return {"held": [_task_view.dump(t) for t in held], "offered": [_task_view.dump(t) for t in offered]}

    @rpc
    def wishes(self, park_id, limit=50):
        """The public wish list: micro-wishes nobody has claimed yet."""
        return {"park_id": park_id, "wishes": [_wish_view.dump(t) for t in dispatch.wishes(self._work(park_id),
                                                                                          limit)]}

    # the sweep: expiry, escalation, stale claims, take-overs, visits --------------------------
    @timer(interval=1)
    def sweep_timer(self):
        interval = settings.get_float("VOLUNTEERS_SWEEP_INTERVAL_S")
        if time.monotonic() - VolunteersService._last_sweep < interval:
            return
        VolunteersService._last_sweep = time.monotonic()
        alarms = Alarms(self.db, SWEEP_LOOP)
        if time.monotonic() - VolunteersService._last_round >= settings.get_float("SWEEP_ROUND_S"):
            # a process's first sweep, then every SWEEP_ROUND_S: every park's alarm rung now,
            # for what no alarm was rung for (data from before alarms, a ring lost with its process)
            VolunteersService._last_round = time.monotonic()
            for park_id in sorted(set(parks_with(self.db, "tasks")) | set(parks_with(self.db, "households"))):
                alarms.ring(park_id, utcnow())
        # only the parks whose alarm rang: a park with nothing due costs no read (lamplight.alarms)
        for park_id, version in sorted(alarms.rung(utcnow()).items()):
            try:
                work = self._work(park_id)
                config = work.config()
                tz = rosters.zone(config["timezone"])
                # the park's next due time first: a visit with nothing due yet (every quiet park in
                # the rounds) is these reads and no sweep; read after the alarm, it settles the
                # alarm as it is (work written meanwhile rang it, and its version keeps it rung)
                wanted = self._next_due(work, config, tz)
                if wanted <= utcnow() or (park_id, visits.local_month(utcnow(), tz)) not in _SCHEDULED:
                    self._sweep(park_id, work)
                    wanted = self._next_due(work, config, tz)
                alarms.settle(park_id, version, wanted)
            except NotFound:
                alarms.settle(park_id, version, None)  # a park with data but no configuration any more
            except Exception as exc:  # one park's trouble must not stop the others' sweep
                self.log.error("volunteers.sweep_failed", park_id=park_id, error=str(exc))

    @staticmethod
    def _next_due(work, config, tz):
        """When the park's sweep is next wanted: a task's next check, or its visits' next step."""
        return min(at for at in (work.store.next_check(), visit_plans.next_due(work, config, tz)) if at is not None)

    @rpc
    def sweep(self, park_id):
        """Run the sweep of one park now (the timer runs it every
        VOLUNTEERS_SWEEP_INTERVAL_S for every park)."""
        return self._sweep(park_id)

    def _sweep(self, park_id, work=None):
        work = work or self._work(park_id)
        config = work.config()
        tz = rosters.zone(config["timezone"])
        done = dispatch.sweep(work, config, tz, SWEEP_BATCH)
        done["visits_missed"] = visit_plans.close_months(work, config, tz, SWEEP_BATCH)
        month = visits.local_month(utcnow(), tz)
        if (park_id, month) not in _SCHEDULED:  # the month's visits, once per process and month
            done["visits_scheduled"] = visit_plans.plan(work, month)["scheduled"]
            _SCHEDULED.add((park_id, month))
        return done

    # visit plans: the six must-visits ----------------------------------------------------------
    @rpc
    def put_household(self, park_id, code, payload):
        data = load_or_reject(_household, payload, "the household")
        return shown(visit_plans.put_household(self._work(park_id), code_or_reject(code), data))

    @rpc
    def generate_visits(self, park_id, month=None):
        """The month's visit to every active household (default: this month
        in the park's time zone). Running it again adds only what is missing."""
        return visit_plans.generate(self._work(park_id), month)

    @rpc
    def visit_proof(self, park_id, visit_id, payload):
        """Proof of a visit: when, what was found, a photo reference, the place."""
        proof = load_or_reject(_proof, payload, "the proof of visit")
        return _visit_view.dump(visit_plans.prove(self._work(park_id), visit_id, proof))

    @rpc
    def close_month(self, park_id, month):
        """Close a month whose grace is over: the visits nobody proved are
        missed and escalated. The sweep does the same by itself."""
        closed = visit_plans.close_month(self._work(park_id), month, SWEEP_BATCH)
        missed = closed.pop("visits")
        return dict(closed, missed=len(missed), visits=[_visit_view.dump(v) for v in missed])

    @rpc
    def visits(self, park_id, month=None, status=None):
        listed = visit_plans.listing(self._work(park_id), month, status)
        return dict(listed, visits=[_visit_view.dump(v) for v in listed["visits"]])

    # emergency mode --------------------------------------------------------------------------
    @rpc
    def switch_mode(self, park_id, payload):
        """平战转换: switch the park to emergency mode or back to normal."""
        return emergency.switch(self._work(park_id), load_or_reject(_switch, payload, "the switch"))

    @rpc
    def mode(self, park_id):
        return emergency.mode(self._work(park_id))

    @rpc
    def call_out(self, park_id, payload, idempotency_key=None):
        """A call-out in emergency mode reaches the emergency squad and
        everyone on duty now, each with a reply record of their own."""
        command = load_or_reject(_callout, payload, "the call-out")
        return emergency.call_out(self._work(park_id), command, idempotency_key)

    @rpc
    def reply(self, park_id, callout_id, payload):
        return emergency.reply(self._work(park_id), callout_id, load_or_reject(_reply, payload, "the reply"))

    @rpc
    def callout(self, park_id, callout_id):
        return emergency.tally(self._work(park_id), callout_id)


# (park, month) whose visits this process has scheduled; generating again would only find them there
_SCHEDULED = set()

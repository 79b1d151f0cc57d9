"""The volunteers service: the dispatch desk of a service centre.

Responders (volunteers and organisational units), colour teams and rosters;
dispatch of routed needs as tasks offered to the best K (the first claim
wins), direct assignment to a unit, the public wish list with self-service
claiming; offers that expire go to the next K, then to the team lead, and an
urgent need nobody claims at night pages the emergency squad. Visit plans
(the six must-visits) and emergency mode with call-outs.
"""
import time
from datetime import timedelta

from nameko.timer import timer

from lamplight import settings
from lamplight.consuming import subscribe
from lamplight.errors import BadInput, Conflict, NotFound, code_or_reject, load_or_reject, time_or_reject
from lamplight.ids import new_id
from lamplight.observability import Observability
from lamplight.parkconfig import ConfigWatch, editable, plain
from lamplight.publishing import Change, EventOutbox
from lamplight.rpc import rpc
from lamplight.storage import Mongo, check_park_id
from services.volunteers import domain
from services.volunteers.metrics import (
    CALLOUT_RECIPIENTS,
    DISPATCH_SECONDS,
    NEEDS_UNMATCHED,
    TASK_ESCALATIONS,
    TASK_TRANSITIONS,
    TASKS_OFFERED,
    VISITS_MISSED,
)
from services.volunteers.schemas import (
    CalloutEventSchema,
    CalloutSchema,
    EmergencyEventSchema,
    EmergencySwitchSchema,
    HouseholdSchema,
    NeedRoutedSchema,
    PauseSchema,
    ReplySchema,
    ResponderRegistrationSchema,
    ResponderViewSchema,
    RosterSchema,
    ServiceHoursSchema,
    TaskActionSchema,
    TaskEventSchema,
    TaskViewSchema,
    VisitEscalationEventSchema,
    VisitEventSchema,
    VisitProofSchema,
    VisitViewSchema,
    VolunteerEventSchema,
    VolunteersConfigSchema,
    WishViewSchema,
)
from services.volunteers.store import INDEXES, PARTITIONED, VolunteersStore, parks_with, utcnow

SWEEP_BATCH = 500
SYSTEM = "system"
_config = VolunteersConfigSchema()
_registration = ResponderRegistrationSchema()
_responder_view = ResponderViewSchema()
_roster = RosterSchema()
_pause = PauseSchema()
_need_routed = NeedRoutedSchema()
_task_action = TaskActionSchema()
_task_view = TaskViewSchema()
_task_event = TaskEventSchema()
_wish_view = WishViewSchema()
_hours = ServiceHoursSchema()
_volunteer_event = VolunteerEventSchema()
_household = HouseholdSchema()
_proof = VisitProofSchema()
_visit_event = VisitEventSchema()
_visit_escalation = VisitEscalationEventSchema()
_visit_view = VisitViewSchema()
_switch = EmergencySwitchSchema()
_callout = CalloutSchema()
_reply = ReplySchema()
_emergency_event = EmergencyEventSchema()
_callout_event = CalloutEventSchema()


class VolunteersService:
    name = "volunteers"

    log = Observability()
    configs = ConfigWatch()  # keeps this process's cache of park configurations true
    # concurrent workers' inserts share one request
    db = Mongo(indexes=INDEXES, partitioned=PARTITIONED, group_commit=("tasks",))
    events = EventOutbox(collections=("responders", "tasks", "visits", "callout_recipients", "parkstate"))

    _last_sweep = time.monotonic()

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
        version, unchanged = VolunteersStore(self.db, park_id).park_config.install(config)
        return {"park_id": park_id, "version": version, "unchanged": unchanged, "teams": len(config["teams"]),
                "skills": len(config["skills"]), "zones": len(config["zones"])}

    @rpc
    def config(self, park_id):
        return plain(self._config(VolunteersStore(self.db, park_id)))

    def _config(self, store):
        return store.park_config.require()

    # responders ----------------------------------------------------------------------
    @rpc
    def register_responder(self, park_id, payload):
        data = load_or_reject(_registration, payload, "the responder")
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        _check_codes(config, data)
        responder_id = new_id("rsp")
        roster = data.pop("roster") or {"shifts": [], "leave": [], "extra": []}
        responder = dict(data, _id=responder_id, responder_id=responder_id,
                         ref=data.pop("external_ref") or responder_id,
                         park_id=park_id, registered_at=utcnow(), last_work_at=None,
                         categories=_categories(config, data["teams"]), **_roster_fields(roster))
        event = self._volunteer_event(responder, "registered")
        with self.events.staging([event]) as staged:
            responder.update(staged.fields())
            existing = store.add_responder(responder)
            staged.written = existing is None
        if existing is not None:
            return dict(_responder_view.dump(existing), created=False)
        return dict(_responder_view.dump(responder), created=True)

    @rpc
    def get_responder(self, park_id, responder_id):
        return _responder_view.dump(self._responder(VolunteersStore(self.db, park_id), responder_id))

    def _responder(self, store, responder_id):
        responder = store.get_responder(responder_id)
        if responder is None:
            raise NotFound("no responder {} in park {}".format(responder_id, store.park_id),
                           {"responder_id": ["unknown"]})
        return responder

    @rpc
    def set_roster(self, park_id, responder_id, payload):
        """Replace a responder's weekly shifts, leave and extra shifts."""
        roster = load_or_reject(_roster, payload, "the roster")
        store = VolunteersStore(self.db, park_id)
        self._config(store)
        responder = self._responder(store, responder_id)
        fields = _roster_fields(roster)
        self._change_responder(store, dict(responder, **fields), fields, "roster")
        return _responder_view.dump(dict(responder, **fields))

    @rpc
    def set_active(self, park_id, responder_id, payload):
        """Pause a responder (no offers while paused) or make them active again."""
        data = load_or_reject(_pause, payload, "the pause")
        store = VolunteersStore(self.db, park_id)
        responder = self._responder(store, responder_id)
        fields = {"active": data["active"], "pause_reason": data["reason"]}
        self._change_responder(store, dict(responder, **fields), fields, "resumed" if data["active"] else "paused")
        return _responder_view.dump(dict(responder, **fields))

    def _change_responder(self, store, after, fields, change):
        with self.events.staging([self._volunteer_event(after, change)]) as staged:
            staged.written = store.set_responder(after["_id"], fields, staged.update())
        if not staged.written:
            raise NotFound("no responder {} in park {}".format(after["_id"], store.park_id))

    def _volunteer_event(self, responder, change):
        return self.events.new("volunteer.{}".format("registered" if change == "registered" else "changed"),
                               park_id=responder["park_id"], subject=responder["_id"],
                               data=_volunteer_event.dump(dict(responder, change=change)))

    @rpc
    def on_duty(self, park_id, at=None, team=None):
        """Who is on duty in the park at ``at`` (default now): one lookup of
        that hour of the week in the duty index, then the exact minute,
        leave and extra shifts."""
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        if team is not None and team not in {t["code"] for t in config["teams"]}:
            raise BadInput("unknown team {}".format(team), {"team": ["one of: " + ", ".join(
                t["code"] for t in config["teams"])]})
        at = time_or_reject(at, "at") if at else utcnow()
        tz = domain.zone(config["timezone"])
        on = sorted(_on_duty_now(store, at, tz, teams=[team] if team else None), key=lambda r: r["_id"])
        return {"park_id": park_id, "at": at.isoformat(), "count": len(on),
                "responders": [{"id": r["_id"], "teams": r["teams"], "zone": r.get("zone")} for r in on]}

    # dispatch ------------------------------------------------------------------------------
    @subscribe("needs", "need.triaged")
    @subscribe("needs", "need.reopened")
    def on_need_routed(self, envelope):
        """A need routed to a team (triaged, re-triaged or reopened) becomes a
        task of its own: assigned to the unit it names, put on the public wish
        list (a micro-wish), or offered to the best K responders."""
        started = time.monotonic()
        park_id = envelope["parkid"]
        need = load_or_reject(_need_routed, envelope["data"], envelope["type"] + " data")
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        at = utcnow()
        teams = [need["team"]] if need["team"] else domain.teams_covering(config, need["category"])
        skills = sorted(config["item_skills"].get(need["item"] or "", []))
        unit = store.unit(need["unit"]) if need["unit"] else None
        mode = domain.MODE_UNIT if unit else domain.MODE_WISH if need["kind"] == "micro_wish" else domain.MODE_OFFER
        task = domain.new_task(park_id, need, mode, teams, skills, at, config)
        task["_id"] = task["task_id"]
        types = []
        if mode == domain.MODE_UNIT:
            task.update(status=domain.CLAIMED, holder={"responder_id": unit["_id"], "member_id": None},
                        claimed_at=at)
            task["history"].append({"at": at, "what": "assigned", "to": unit["_id"]})
            types = [("task.claimed", unit["_id"], None)]
        else:  # a micro-wish is on the public list and offered to the best K as well
            types = self._offer_round(store, config, task, at, "dispatch")
        task["next_check_at"] = domain.next_check(task, config)
        task["version"] = 1
        envelopes = self._task_events(task, types, at)
        with self.events.staging(envelopes) as staged:
            task.update(staged.fields())
            inserted = staged.written = store.insert_task(task)
        if not inserted:
            self.log.info("dispatch.duplicate_delivery", need_id=need["need_id"], routing=need["routing"])
            return
        store.note_work([rid for t, rid, _ in types if t == "task.offered"], at)
        DISPATCH_SECONDS.labels(park_id, mode).observe(time.monotonic() - started)
        self.log.info("dispatch.task_created", task_id=task["task_id"], mode=mode, offers=len(task["offers"]))

    def _offer_round(self, store, config, task, at, reason):
        """Offer ``task`` to the next K eligible responders; nobody left → the
        team's leads (once). Returns the (event type, responder, reason) to publish."""
        tz = domain.zone(config["timezone"])
        # a need already past its due time (re-triaged, reopened, an event
        # delivered late) is still offered to whoever is on duty now
        horizon = max(at, min(task["due_at"], at + timedelta(days=7)))
        hours = {domain.hour_of_week(at + timedelta(hours=h), tz)
                 for h in range(int((horizon - at).total_seconds() // 3600) + 1)}
        pool = store.on_duty_candidates(hours, teams=task["teams"] or None, skills=task["skills"], now=at)
        ranked = domain.rank(pool, task, store.park_id, at, tz, store.open_counts([r["_id"] for r in pool]), config)
        chosen = [r for r, _ in ranked[:config["dispatch"]["offer_k"]]]
        if chosen:
            domain.add_offers(task, chosen, at, config, reason)
            TASKS_OFFERED.labels(store.park_id).inc(len(chosen))
            return [("task.offered", r["_id"], reason) for r in chosen]
        if not any(e["level"] == "lead" for e in task["escalations"]):
            leads = [r for r in _team_leads(store, config, task["teams"]) if r["_id"] not in task["offered_to"]]
            task["escalations"].append({"level": "lead", "at": at, "to": [r["_id"] for r in leads]})
            TASK_ESCALATIONS.labels(store.park_id, "lead").inc()
            if leads:
                domain.add_offers(task, leads, at, config, "lead")
                return [("task.escalated", None, "lead")] + [("task.offered", r["_id"], "lead") for r in leads]
        NEEDS_UNMATCHED.labels(store.park_id, task["category"]).inc()
        task["retry_at"] = at + timedelta(minutes=config["dispatch"]["offer_minutes"])
        self.log.warning("dispatch.nobody_left", task_id=task["task_id"], category=task["category"])
        return [("task.unmatched", None, "nobody_left")] if reason == "dispatch" else []

    def _task_events(self, task, types, at):
        """One envelope per (event type, responder it concerns, reason)."""
        envelopes = []
        holder = task.get("holder") or {}
        completion = task.get("completion") or {}
        for event_type, responder_id, reason in types:
            offer = task["offers"].get(responder_id) or {} if responder_id else {}
            member = holder.get("member_id") if responder_id and holder.get("responder_id") == responder_id \
                else offer.get("member_id")
            data = dict(task, responder_id=responder_id, member_id=member, reason=reason, at=at,
                        level=reason if event_type == "task.escalated" else None, note=completion.get("note"),
                        hours=completion.get("hours"), offered_at=offer.get("offered_at"),
                        expires_at=offer.get("expires_at"))
            schema = _hours if event_type == "volunteer.service_hours" else _task_event
            envelopes.append(self.events.new(event_type, park_id=task["park_id"], subject=task["task_id"],
                                             data=schema.dump(data)))
        return envelopes

    @subscribe("needs", "need.assigned")
    @subscribe("needs", "need.cancelled")
    @subscribe("needs", "need.rejected")
    def on_need_taken_elsewhere(self, envelope):
        """A need the desk assigned itself, cancelled or rejected: its open
        task is withdrawn, and whoever had it offered or held hears so."""
        park_id = envelope["parkid"]
        need = load_or_reject(_need_routed, envelope["data"], envelope["type"] + " data")
        own = domain.task_id(need["need_id"], need["routing"])
        if envelope["type"] == "need.assigned" and need["task_id"] == own:
            return  # our own claim coming back
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        try:
            self._change_task(store, config, own, lambda task, at: _withdraw(task, at, envelope["type"]))
        except NotFound:
            return
        except _Skip:
            pass  # withdrawn already (a redelivery): its holder's slot is freed below all the same
        task = store.get_task(own)
        holder = (task.get("holder") or {}).get("responder_id")
        if task["status"] == domain.WITHDRAWN and holder:
            store.free_slot(holder, own)  # the holder's cap counts open tasks only

    # claiming and the task lifecycle ---------------------------------------------------------
    @rpc
    def act(self, park_id, task_id, action, payload):
        """claim, decline, start, complete, release, request_takeover or
        answer_takeover, by the responder named in the body."""
        if action not in domain.TASK_ACTIONS:
            raise BadInput("unknown action {}".format(action), {"action": ["one of: " + ", ".join(
                domain.TASK_ACTIONS)]})
        command = load_or_reject(_task_action, payload, "the {} command".format(action))
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        responder = self._responder(store, command["responder_id"])
        if action == "claim":
            return _task_view.dump(self._claim(store, config, task_id, responder, command))
        if action == "request_takeover":
            return _task_view.dump(self._request_takeover(store, config, task_id, responder))
        if action == "answer_takeover" and command["accept"] is None:
            raise BadInput("say whether the take-over is accepted", {"accept": ["true or false"]})
        args = dict(command, member_id=responder.get("member_id"))
        who = command["responder_id"]
        asked = {}  # answer_takeover: who asked, in the version the answer changed

        def change(task, at):
            asked["by"] = (task.get("takeover") or {}).get("responder_id")
            changed, types = domain.transition(task, action, args, at, config)
            types = _about(types, changed, who)
            if action == "release":  # offered again at once, to others
                types += self._offer_round(store, config, changed, at, "released")
            return changed, types

        task = self._change_task(store, config, task_id, change)
        if action in ("complete", "release"):
            store.free_slot(who, task_id)
        elif action == "answer_takeover":
            # accepted: the holder gives up their slot; refused: the requester's, taken when asking
            store.free_slot(who if command["accept"] else asked["by"], task_id)
        return _task_view.dump(task)

    def _claim(self, store, config, task_id, responder, command):
        """The first claim wins: the task's next version is one insert that
        exactly one claimer makes. A slot under the responder's cap is taken
        first, and given back when the claim loses."""
        task = self._task(store, task_id)
        if task["status"] != domain.OFFERED:
            raise Conflict("task {} is {}: it cannot be claimed".format(task_id, task["status"]),
                           {"status": [task["status"]]}, code="already_taken")
        kind, cap = ("wish", config["wishes"]["claim_cap"]) if task["mode"] == domain.MODE_WISH else \
            ("task", responder.get("max_open_tasks") or config["dispatch"]["default_cap"])
        if task["mode"] == domain.MODE_WISH:
            problem = _may_claim_wish(responder, task)
            if problem:
                raise Conflict(problem, {"responder_id": [problem]}, code="not_eligible")
        slot = store.take_slot(responder["_id"], kind, cap, task_id)
        if slot is None:
            raise Conflict("{} holds {} open {}s, the cap".format(responder["_id"], cap, kind),
                           {"responder_id": ["at the cap of {} open {}s".format(cap, kind)]}, code="cap_reached")
        args = dict(command, member_id=responder.get("member_id"))

        def claim(task, at):
            changed, types = domain.transition(task, "claim", args, at, config)
            withdrawn = [rid for rid, o in changed["offers"].items() if o["status"] == domain.OFFER_WITHDRAWN
                         and task["offers"][rid]["status"] == domain.OFFER_LIVE]
            return changed, _about(types, changed, responder["_id"]) + [
                ("task.withdrawn", rid, "claimed_by_another") for rid in withdrawn]
        try:
            return self._change_task(store, config, task_id, claim)
        except BaseException:
            store.free_slot(responder["_id"], task_id)
            raise

    def _request_takeover(self, store, config, task_id, responder):
        task = self._task(store, task_id)
        kind, cap = ("wish", config["wishes"]["claim_cap"]) if task["mode"] == domain.MODE_WISH else \
            ("task", responder.get("max_open_tasks") or config["dispatch"]["default_cap"])
        if store.take_slot(responder["_id"], kind, cap, task_id) is None:
            raise Conflict("{} is at the cap of {} open {}s".format(responder["_id"], cap, kind),
                           {"responder_id": ["at the cap"]}, code="cap_reached")
        requester = {"responder_id": responder["_id"], "member_id": responder.get("member_id")}
        def ask(task, at):
            changed, types = domain.request_takeover(task, requester, at, config)
            return changed, _about(types, changed, responder["_id"])
        try:
            return self._change_task(store, config, task_id, ask)
        except BaseException:
            store.free_slot(responder["_id"], task_id)
            raise

    def _task(self, store, task_id, internal=False):
        task = store.get_task(task_id, internal=internal)
        if task is None:
            raise NotFound("no task {} in park {}".format(task_id, store.park_id), {"task_id": ["unknown"]})
        return task

    def _change_task(self, store, config, task_id, change):
        """Read, decide (``change(task, at)`` → (task after, [(type, responder, reason)])),
        write the next version with its events (Events.change); on a lost race
        read again, and the rules decide on what the winner left (a claim that
        lost finds the task claimed: 409)."""
        def decide(task):
            at = utcnow()
            after, types = change(task, at)
            after["next_check_at"] = domain.next_check(after, config)
            fields = {k: after.get(k) for k in domain.TASK_STATE}
            return Change(fields, self._task_events(after, types, at),
                          (dict(after, **fields, version=task["version"] + 1), types, at))

        after, types, at = self.events.change(
            lambda: self._task(store, task_id, internal=True), decide, store.write_task,
            conflict=Conflict("task {} kept changing; try again".format(task_id),
                              {"version": ["changed concurrently"]}))
        store.note_work([rid for t, rid, _ in types if t == "task.offered"], at)
        for event_type, _, reason in types:
            TASK_TRANSITIONS.labels(store.park_id, event_type).inc()
        return after

    @rpc
    def get_task(self, park_id, task_id):
        return _task_view.dump(self._task(VolunteersStore(self.db, park_id), task_id))

    @rpc
    def tasks_of(self, park_id, responder_id):
        """What a responder holds and what is offered to them now."""
        store = VolunteersStore(self.db, park_id)
        self._responder(store, responder_id)
        held = [t for t in store.tasks_held_by(responder_id) if t["status"] in domain.HELD]
        offered = [t for t in store.tasks_offered_to(responder_id)
                   if t["offers"].get(responder_id, {}).get("status") == domain.OFFER_LIVE]
        return {"held": [_task_view.dump(t) for t in held], "offered": [_task_view.dump(t) for t in offered]}

    @rpc
    def wishes(self, park_id, limit=50):
        """The public wish list: micro-wishes nobody has claimed yet."""
        if not isinstance(limit, int) or not 1 <= limit <= 200:
            raise BadInput("limit is 1-200", {"limit": [str(limit)]})
        store = VolunteersStore(self.db, park_id)
        self._config(store)
        return {"park_id": park_id, "wishes": [_wish_view.dump(t) for t in store.wishes(limit)]}

    # the sweep: expiry, escalation, stale claims, take-overs, visits --------------------------
    @timer(interval=1)
    def sweep_timer(self):
        interval = settings.get_float("VOLUNTEERS_SWEEP_INTERVAL_S")
        if time.monotonic() - VolunteersService._last_sweep < interval:
            return
        VolunteersService._last_sweep = time.monotonic()
        for park_id in sorted(set(parks_with(self.db, "tasks")) | set(parks_with(self.db, "households"))):
            try:
                self._sweep(park_id)
            except NotFound:
                pass  # a park with data but no configuration any more
            except Exception as exc:  # one park's trouble must not stop the others' sweep
                self.log.error("volunteers.sweep_failed", park_id=park_id, error=str(exc))

    @rpc
    def sweep(self, park_id):
        """Run the sweep of one park now (the timer runs it every
        VOLUNTEERS_SWEEP_INTERVAL_S for every park)."""
        return self._sweep(park_id)

    def _sweep(self, park_id):
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        tz = domain.zone(config["timezone"])
        done = {"expire": 0, "reoffer": 0, "night_page": 0, "release_stale": 0, "transfer": 0}
        for task in store.tasks_due(utcnow(), SWEEP_BATCH):
            try:
                steps = self._sweep_task(store, config, tz, task["task_id"])
            except (_Skip, Conflict):
                continue  # another replica's sweep, or a responder, got there first
            for step in steps:
                done[step] += 1
        done["visits_missed"] = self._close_months(store, config, tz)
        month = domain.local_month(utcnow(), tz)
        if (park_id, month) not in _SCHEDULED:  # the month's visits, once per process and month
            done["visits_scheduled"] = self._generate_visits(store, month)["scheduled"]
            _SCHEDULED.add((park_id, month))
        return done

    def _sweep_task(self, store, config, tz, task_id):
        taken = {}

        def change(task, at):
            steps = domain.sweep_steps(task, at, tz, config)
            if not steps:
                raise _Skip()
            task = domain.copy_task(task)
            types = []
            for step in steps:
                if step == "expire":
                    expired = [rid for rid, o in task["offers"].items()
                               if o["status"] == domain.OFFER_LIVE and o["expires_at"] <= at]
                    domain.expire_offers(task, at)
                    types += [("task.offer_expired", rid, "expired") for rid in expired]
                    if not domain.live_offers(task):
                        types += self._offer_round(store, config, task, at, "expired")
                elif step == "reoffer":
                    task["retry_at"] = None
                    types += self._offer_round(store, config, task, at, "retry")
                elif step == "night_page":
                    types += self._night_page(store, config, task, at)
                elif step == "release_stale":
                    taken["freed"] = task["holder"]["responder_id"]
                    task.update(status=domain.OFFERED, holder=None, claimed_at=None, started_at=None,
                                takeover=None)
                    task["history"].append({"at": at, "what": "released", "reason": "stale_claim"})
                    types += [("task.released", taken["freed"], "stale_claim")]
                    types += self._offer_round(store, config, task, at, "released")
                elif step == "transfer":
                    taken["freed"] = task["holder"]["responder_id"]
                    task = domain.transfer(task, at, "no_answer")
                    types += [("task.transferred", task["holder"]["responder_id"], "no_answer")]
            taken["steps"] = steps
            return task, types

        self._change_task(store, config, task_id, change)
        if taken.get("freed"):
            store.free_slot(taken["freed"], task_id)
        return taken["steps"]

    def _night_page(self, store, config, task, at):
        squad = [r for r in store.active_in_teams(domain.squad_teams(config))
                 if r["kind"] == "volunteer"]
        fresh = [r for r in squad if r["_id"] not in task["offered_to"]]
        task["escalations"].append({"level": "night_squad", "at": at, "to": [r["_id"] for r in squad]})
        TASK_ESCALATIONS.labels(store.park_id, "night_squad").inc()
        if fresh:
            domain.add_offers(task, fresh, at, config, "night_squad")
        return [("task.escalated", None, "night_squad")] + [("task.offered", r["_id"], "night_squad") for r in fresh]

    # visit plans: the six must-visits ----------------------------------------------------------
    @rpc
    def put_household(self, park_id, code, payload):
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        data = load_or_reject(_household, payload, "the household")
        code = code_or_reject(code)
        if data["kind"] not in config["visit_kinds"]:
            raise BadInput("unknown visit kind {}".format(data["kind"]), {"kind": [
                "one of: " + ", ".join(config["visit_kinds"])]})
        if data["team"] and data["team"] not in {t["code"] for t in config["teams"]}:
            raise BadInput("unknown team {}".format(data["team"]), {"team": ["unknown"]})
        if data["zone"]:
            _check_codes(config, {"zone": data["zone"], "teams": [], "skills": []})
        if data["visitor_ref"] and not store.responders_by_ref([data["visitor_ref"]]):
            raise BadInput("no responder with ref {}".format(data["visitor_ref"]), {"visitor_ref": ["unknown"]})
        return _plain(store.put_household(code, data))

    @rpc
    def generate_visits(self, park_id, month=None):
        """The month's visit to every active household (default: this month
        in the park's time zone). Running it again adds only what is missing."""
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        tz = domain.zone(config["timezone"])
        current = domain.local_month(utcnow(), tz)
        month = _month(month) if month else current
        if month > current:
            raise BadInput("month {} has not begun in {}".format(month, config["timezone"]),
                           {"month": ["a future month"]})
        deadline = domain.visit_deadline(month, tz, domain.visit_rules(config)["grace_days"])
        if utcnow() >= deadline:
            raise BadInput("month {} has ended and its visits could be proved until {}: it is too late to plan "
                           "them".format(month, deadline.astimezone(tz).isoformat()),
                           {"month": ["ended, grace closed {}".format(deadline.astimezone(tz).date())]})
        # a month that has ended but is in its grace may still be planned: said plainly in the answer
        return dict(self._generate_visits(store, month), proof_until=deadline.isoformat())

    def _generate_visits(self, store, month):
        park_id = store.park_id
        at = utcnow()
        visitors = {r["ref"]: r for r in store.responders_by_ref(
            {h["visitor_ref"] for h in store.active_households() if h.get("visitor_ref")})}
        visits, envelopes = [], []
        for household in store.active_households():
            visitor = visitors.get(household.get("visitor_ref"))
            visit = {"_id": domain.visit_id(household["code"], month), "visit_id": domain.visit_id(
                household["code"], month), "park_id": park_id, "household": household["code"],
                "label": household["label"],
                "members": household.get("members"),
                "kind": household["kind"], "month": month, "status": domain.VISIT_PLANNED,
                "visitor_ref": household.get("visitor_ref"), "team": household.get("team"),
                "responder_id": visitor["_id"] if visitor else None,
                "member_id": visitor.get("member_id") if visitor else None, "proof": None, "version": 1,
                "created_at": at}
            visits.append(visit)
            envelopes.append(self._visit_event(visit, "visit.scheduled", at))
        fresh = self.events.insert_many(visits, envelopes, store.insert_visits)
        return {"park_id": park_id, "month": month, "scheduled": len(fresh), "households": len(visits)}

    def _visit_event(self, visit, event_type, at, rung=None):
        if rung is not None:
            data = _visit_escalation.dump(dict(visit, at=at, level=rung["level"], to=rung["to"]))
        else:
            data = _visit_event.dump(dict(visit, at=at))
        return self.events.new(event_type, park_id=visit["park_id"], subject=visit["visit_id"], data=data)

    @rpc
    def visit_proof(self, park_id, visit_id, payload):
        """Proof of a visit: when, what was found, a photo reference, the place."""
        proof = load_or_reject(_proof, payload, "the proof of visit")
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        tz = domain.zone(config["timezone"])
        visit = self._visit(store, visit_id)
        if domain.local_month(proof["visited_at"], tz) != visit["month"]:
            raise BadInput("the visit of {} must be made in {}".format(visit["household"], visit["month"]),
                           {"visited_at": ["not in {}".format(visit["month"])]})
        responder = self._responder(store, proof["responder_id"])

        def prove(visit, at):
            _must_be_planned(visit)
            return {"status": domain.VISIT_DONE, "proof": dict(proof, visited_at=proof["visited_at"]),
                    "responder_id": responder["_id"], "member_id": responder.get("member_id"),
                    "closed_at": at}, [("visit.completed", None)]
        return _visit_view.dump(self._change_visit(store, visit_id, prove))

    def _visit(self, store, visit_id, internal=False):
        visit = store.get_visit(visit_id, internal=internal)
        if visit is None:
            raise NotFound("no visit {} in park {}".format(visit_id, store.park_id), {"visit_id": ["unknown"]})
        return visit

    def _change_visit(self, store, visit_id, decide):
        """Read the visit, ``decide(visit, at)`` → (fields to set, [(event
        type, escalation rung or None)]), write the next version with its
        events (Events.change); on a lost race read again and decide on what
        the winner left."""
        def change(visit):
            at = utcnow()
            fields, events = decide(visit, at)
            after = dict(visit, **fields)
            envelopes = [self._visit_event(after, event_type, at, rung) for event_type, rung in events]
            return Change(fields, envelopes, after)

        return self.events.change(lambda: self._visit(store, visit_id, internal=True), change, store.write_visit,
                                  conflict=Conflict("visit {} kept changing; try again".format(visit_id),
                                                    {"version": ["changed concurrently"]}))

    def _leads_of(self, store, config, visit):
        """The party group's leads for a visit: its household's team, else the visitor's teams."""
        teams = [visit["team"]] if visit.get("team") else []
        if not teams and visit.get("responder_id"):
            visitor = store.get_responder(visit["responder_id"]) or {}
            teams = list(visitor.get("teams") or ())
        return [r["_id"] for r in _team_leads(store, config, teams)]

    def _miss(self, store, config, visit_id):
        """Mark a planned visit missed and escalate it: the party group's lead
        at once (the park's supervisors later), or the supervisors at once
        when the group has no lead."""
        def miss(visit, at):
            _must_be_planned(visit)
            leads = self._leads_of(store, config, visit)
            rung = domain.visit_escalation("lead" if leads else "supervisor", at, leads)
            return {"status": domain.VISIT_MISSED, "closed_at": at, "escalations": [rung],
                    "supervision_pending": bool(leads)}, [("visit.missed", None), ("visit.escalated", rung)]
        visit = self._change_visit(store, visit_id, miss)
        VISITS_MISSED.labels(store.park_id, visit["kind"]).inc()
        return visit

    def _supervise(self, store, config, visit_id):
        """The next rung of a missed visit, once due: the park's supervisors."""
        after_days = domain.visit_rules(config)["supervise_after_days"]

        def supervise(visit, at):
            if not (visit.get("supervision_pending") and domain.supervision_due(visit, at, after_days)):
                raise Conflict("visit {} has no rung due".format(visit_id), code="illegal_transition")
            rung = domain.visit_escalation("supervisor", at, [])
            return {"escalations": list(visit["escalations"]) + [rung], "supervision_pending": False}, [
                ("visit.escalated", rung)]
        return self._change_visit(store, visit_id, supervise)

    @rpc
    def close_month(self, park_id, month):
        """Close a month whose grace is over: the visits nobody proved are
        missed (each published as visit.missed, which the points service may
        deduct on, and escalated). The sweep does the same by itself."""
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        tz = domain.zone(config["timezone"])
        month = _month(month)
        deadline = domain.visit_deadline(month, tz, domain.visit_rules(config)["grace_days"])
        if utcnow() < deadline:
            raise BadInput("month {} can be proved until {}: close it after that".format(
                month, deadline.astimezone(tz).isoformat()), {"month": ["in its grace until {}".format(
                    deadline.astimezone(tz).date())]})
        marked = self._close_months(store, config, tz, month)
        missed = store.visits_of(month, domain.VISIT_MISSED)
        return {"park_id": park_id, "month": month, "missed": len(missed), "marked_now": marked,
                "visits": [_visit_view.dump(v) for v in missed]}

    def _close_months(self, store, config, tz, month=None):
        """Miss the planned visits of every month (or of ``month``) whose grace
        is over; escalate missed visits whose next rung is due."""
        now = utcnow()
        grace = domain.visit_rules(config)["grace_days"]
        missed = 0
        current = domain.local_month(now, tz)
        for visit in store.planned_before(domain.month_after(month) if month else current, SWEEP_BATCH):
            if now < domain.visit_deadline(visit["month"], tz, grace):
                continue  # still in its grace
            try:
                self._miss(store, config, visit["visit_id"])
                missed += 1
            except Conflict:
                pass  # proved, or missed by another replica, meanwhile
        after_days = domain.visit_rules(config)["supervise_after_days"]
        for visit in store.missed_to_supervise(SWEEP_BATCH):
            if not domain.supervision_due(visit, now, after_days):
                continue
            try:
                self._supervise(store, config, visit["visit_id"])
            except Conflict:
                pass
        return missed

    @rpc
    def visits(self, park_id, month=None, status=None):
        store = VolunteersStore(self.db, park_id)
        self._config(store)
        if status is not None and status not in (domain.VISIT_PLANNED, domain.VISIT_DONE, domain.VISIT_MISSED):
            raise BadInput("unknown status {}".format(status), {"status": ["planned, done or missed"]})
        visits = store.visits_of(_month(month) if month else None, status)
        counts = {}
        for v in visits:
            counts[v["status"]] = counts.get(v["status"], 0) + 1
        return {"park_id": park_id, "month": month, "counts": counts,
                "visits": [_visit_view.dump(v) for v in visits]}

    # emergency mode --------------------------------------------------------------------------
    @rpc
    def switch_mode(self, park_id, payload):
        """平战转换: switch the park to emergency mode or back to normal."""
        data = load_or_reject(_switch, payload, "the switch")
        store = VolunteersStore(self.db, park_id)
        self._config(store)

        def decide(state):
            if state["mode"] == data["mode"]:
                return _emergency_view(state, changed=False)
            at = utcnow()
            after = dict(state, mode=data["mode"], reason=data["reason"], actor=data["actor"], since=at,
                         version=state["version"] + 1, park_id=park_id)
            event = self.events.new("emergency.declared" if data["mode"] == "emergency" else "emergency.ended",
                                    park_id=park_id, subject=park_id, data=_emergency_event.dump(dict(after, at=at)))
            return Change({k: after[k] for k in ("mode", "reason", "actor", "since")}, [event],
                          _emergency_view(after, changed=True))

        return self.events.change(store.emergency, decide, store.write_emergency,
                                  conflict=Conflict("the mode of {} kept changing".format(park_id),
                                                    {"mode": ["changed concurrently"]}))

    @rpc
    def mode(self, park_id):
        store = VolunteersStore(self.db, park_id)
        self._config(store)
        return _emergency_view(store.emergency())

    @rpc
    def call_out(self, park_id, payload, idempotency_key=None):
        """A call-out in emergency mode reaches the emergency squad and
        everyone on duty now: one emergency.called_out per person, each in
        its own reply record, so replies are counted per call-out."""
        data = load_or_reject(_callout, payload, "the call-out")
        store = VolunteersStore(self.db, park_id)
        config = self._config(store)
        if store.emergency()["mode"] != "emergency":
            raise Conflict("park {} is not in emergency mode".format(park_id), {"mode": ["normal"]},
                           code="not_in_emergency")
        at = utcnow()
        tz = domain.zone(config["timezone"])
        callout_id = "co_" + (idempotency_key or new_id("co"))
        callout, created = store.insert_callout({"_id": callout_id, "callout_id": callout_id, "message": data[
            "message"], "actor": data["actor"], "at": at})
        squad = store.active_in_teams(domain.squad_teams(config)) if domain.squad_teams(config) else []
        why = {r["_id"]: "on_duty" for r in _on_duty_now(store, at, tz)}
        why.update({r["_id"]: "squad" for r in squad if r["kind"] == "volunteer"})
        docs, envelopes = [], []
        for rid, reason in sorted(why.items()):
            envelope = self.events.new("emergency.called_out", park_id=park_id, subject=callout_id,
                                       data=_callout_event.dump({"callout_id": callout_id, "responder_id": rid,
                                                                 "message": callout["message"], "why": reason,
                                                                 "answer": None, "at": at}))
            docs.append({"_id": "{}:{}".format(callout_id, rid), "callout_id": callout_id, "responder_id": rid,
                         "why": reason, "answer": None, "at": at})
            envelopes.append(envelope)
        fresh = self.events.insert_many(docs, envelopes, store.insert_recipients)
        CALLOUT_RECIPIENTS.labels(park_id).inc(len(fresh))
        return {"callout_id": callout_id, "created": created, "recipients": len(docs),
                "squad": sum(1 for r in why.values() if r == "squad"),
                "on_duty": sum(1 for r in why.values() if r == "on_duty")}

    @rpc
    def reply(self, park_id, callout_id, payload):
        data = load_or_reject(_reply, payload, "the reply")
        store = VolunteersStore(self.db, park_id)
        callout = store.get_callout(callout_id)
        if callout is None:
            raise NotFound("no call-out {} in park {}".format(callout_id, park_id), {"callout_id": ["unknown"]})
        if store.recipient(callout_id, data["responder_id"]) is None:
            raise NotFound("{} was not called out by {}".format(data["responder_id"], callout_id),
                           {"responder_id": ["not a recipient"]})
        at = utcnow()
        envelope = self.events.new("emergency.replied", park_id=park_id, subject=callout_id, data=_callout_event.dump({
            "callout_id": callout_id, "responder_id": data["responder_id"], "message": callout["message"],
            "why": "reply", "answer": data["answer"], "at": at}))
        with self.events.staging([envelope]) as staged:
            staged.written = store.answer(callout_id, data["responder_id"], data["answer"], data["note"], at,
                                          staged.update())
        return self.callout(park_id, callout_id)

    @rpc
    def callout(self, park_id, callout_id):
        store = VolunteersStore(self.db, park_id)
        callout = store.get_callout(callout_id)
        if callout is None:
            raise NotFound("no call-out {} in park {}".format(callout_id, park_id), {"callout_id": ["unknown"]})
        counts = store.reply_counts(callout_id)
        return {"callout_id": callout_id, "message": callout["message"], "at": callout["at"].isoformat(),
                "recipients": sum(counts.values()), "coming": counts.get("coming", 0),
                "cannot": counts.get("cannot", 0), "no_answer": counts.get("no_answer", 0)}


# (park, month) whose visits this process has scheduled; generating again would only find them there
_SCHEDULED = set()


class _Skip(Exception):
    """Nothing to do."""


def _about(types, task, who):
    """The rules' event types as (type, responder it concerns, reason): a
    transfer concerns the new holder, anything else the one who acted."""
    return [(t, task["holder"]["responder_id"] if t == "task.transferred" else who, None) for t in types]




def _on_duty_now(store, at, tz, teams=None):
    """Who is on duty at ``at``: the hour's bucket of the duty index, then the
    exact minute, leave and extra shifts."""
    return [r for r in store.on_duty_candidates({domain.hour_of_week(at, tz)}, teams=teams, now=at)
            if domain.on_duty(r, at, tz)]


def _team_leads(store, config, teams):
    """The active responders who lead any of ``teams`` (the configuration names them by ref)."""
    refs = {ref for t in config["teams"] if t["code"] in teams for ref in t.get("leads", ())}
    return [r for r in store.responders_by_ref(refs) if r.get("active", True)] if refs else []


def _must_be_planned(visit):
    if visit["status"] != domain.VISIT_PLANNED:
        raise Conflict("visit {} is {}".format(visit["visit_id"], visit["status"]), {"status": [visit["status"]]},
                       code="illegal_transition")


def _withdraw(task, at, why):
    withdrawn, told = domain.withdraw(task, at, why)
    if withdrawn is None:
        raise _Skip()
    return withdrawn, [("task.withdrawn", rid, why) for rid in told]


def _may_claim_wish(responder, task):
    if responder.get("kind") != "volunteer":
        return "only a volunteer claims a wish"
    if not responder.get("active", True):
        return "a paused responder cannot claim"
    if not set(task.get("skills") or ()) <= set(responder.get("skills") or ()):
        return "the wish needs skills: " + ", ".join(task["skills"])
    return None


def _categories(config, teams):
    return sorted({c for t in config["teams"] if t["code"] in teams for c in t.get("categories", ())})


def _roster_fields(roster):
    shifts = roster["shifts"]
    extra = roster["extra"]
    return {"shifts": shifts, "intervals": domain.weekly_intervals(shifts), "duty_hours": domain.duty_hours(shifts),
            "leave": roster["leave"], "extra": extra,
            "extra_until": max((s["end"] for s in extra), default=None)}


def _check_codes(config, data):
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


def _month(month):
    if not isinstance(month, str) or len(month) != 7 or month[4] != "-" or not (
            month[:4].isdigit() and month[5:].isdigit() and 1 <= int(month[5:]) <= 12):
        raise BadInput("a month is YYYY-MM", {"month": [str(month)[:20]]})
    return month


def _plain(doc):
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in doc.items()
            if k not in ("_id", "park_id")}


def _emergency_view(state, changed=None):
    view = {"mode": state["mode"], "reason": state.get("reason"), "actor": state.get("actor"),
            "since": state["since"].isoformat() if state.get("since") else None, "version": state["version"]}
    if changed is not None:
        view["changed"] = changed
    return view

"""The needs service layer (services/needs/handlers/) driven directly:
intake and the lifecycle against a repository and the worker's Events, with
no nameko, broker or database. The same tests run against the real
repository on the MongoDB-protocol server (tests/integration/
test_needs_handlers_on_the_server.py): the in-memory one is held to it."""
import pytest

from lamplight import logs
from lamplight.errors import Conflict
from services.needs import domain, handlers
from services.needs.handlers import intake, lifecycle
from services.needs.schemas import COMMAND_SCHEMAS, NeedSubmissionSchema
from tests.unit.needs_repos import InMemoryNeedsStore, configured
from tests.unit.outbox import RecordingOutbox, events

WAGES = {"kind": "urgent_matter", "category": "daily_life", "item": "wage_arrears", "channel": "hotline",
         "title": "三个月工资被拖欠", "entered_by": "desk-01",
         "details": {"employer": "某建材公司", "amount_owed": 15600, "months": 3},
         "requester": {"kind": "worker", "name": "王建国", "phone": "13900002222"}}


@pytest.fixture
def repo():
    return InMemoryNeedsStore("quanlinan", configured())


@pytest.fixture
def work(repo):
    outbox = RecordingOutbox()
    return handlers.Work(repo, events(outbox), logs.get_logger(component="needs-handlers")), outbox


def taxonomy(work):
    return domain.Taxonomy(work.store.park_config.require())


def submit(work, body=WAGES, key="k-1"):
    submission = intake.validate(taxonomy(work), work.store, NeedSubmissionSchema().load(body), "the need")
    return intake.accept(work, taxonomy(work), submission, key)


def act(work, need_id, action, **command):
    return lifecycle.act(work, taxonomy(work), need_id, action, COMMAND_SCHEMAS[action].load(command))


def test_a_need_is_written_with_its_events_and_they_are_published_after(work):
    w, outbox = work
    need, created = submit(w)
    assert created and need["status"] == domain.TRIAGED and need["team"] == "orange"  # routed by the taxonomy
    stored = w.store.get(need["need_id"], internal=True)
    types = ["need.submitted", "need.triaged", "wall.entry_changed"]
    assert [e["type"] for e in stored["_outbox"]] == types  # the events went in with the need
    assert outbox.types() == types and outbox.staged == {} and outbox.discarded == []
    assert all(e["parkid"] == "quanlinan" and e["subject"] == need["need_id"] for e in outbox.published)


def test_the_same_key_answers_the_first_need_and_another_body_under_it_is_a_conflict(work):
    w, outbox = work
    first, _ = submit(w)
    again, created = submit(w)
    assert not created and again["need_id"] == first["need_id"]
    # the retry was built (the first one now its possible duplicate: not routed at once) but not written
    assert len(outbox.published) == 3 and outbox.staged == {}
    assert [e["type"] for e in outbox.discarded] == ["need.submitted", "wall.entry_changed"]
    with pytest.raises(Conflict, match="idempotency key"):
        submit(w, dict(WAGES, title="别的事"))
    assert outbox.staged == {}


def test_the_lifecycle_moves_a_version_at_a_time_and_replays_to_the_stored_state(work):
    w, outbox = work
    need, _ = submit(w)
    act(w, need["need_id"], "assign", actor="desk-01", unit="劳动监察大队")
    act(w, need["need_id"], "start", actor="desk-01")
    act(w, need["need_id"], "resolve", actor="desk-01", public_note="已追回工资")
    closed = act(w, need["need_id"], "evaluate", rating=5, outcome="fixed")
    stored = w.store.get(need["need_id"])
    assert closed["status"] == stored["status"] == domain.CLOSED and stored["version"] == 5
    assert [t["action"] for t in stored["timeline"]] == ["submit", "triage", "assign", "start", "resolve",
                                                          "evaluate"]
    replayed = domain.replay(stored["timeline"])
    assert {k: replayed.get(k) for k in domain.STATE_FIELDS} == {k: stored.get(k) for k in domain.STATE_FIELDS}
    assert outbox.types()[3:] == ["need.assigned", "wall.entry_changed", "need.started", "wall.entry_changed",
                                  "need.resolved", "wall.entry_changed", "need.evaluated", "need.closed",
                                  "wall.entry_changed"]


def test_an_action_the_status_does_not_allow_is_refused_and_nothing_is_written_or_published(work):
    w, outbox = work
    need, _ = submit(w)
    published = len(outbox.published)
    with pytest.raises(domain.IllegalTransition) as refused:
        act(w, need["need_id"], "evaluate", rating=5, outcome="fixed")
    assert refused.value.kind == "conflict" and "assign" in refused.value.fields["allowed_actions"]
    assert w.store.get(need["need_id"])["version"] == 1 and len(outbox.published) == published
    assert outbox.staged == {}


def test_a_change_that_loses_a_race_decides_again_on_what_the_winner_left(work):
    # a desk assigns while a dispatch event starts the same need: the loser's write finds
    # a newer version, its events are discarded, and it is decided again on the winner's state
    w, outbox = work
    need, _ = submit(w)
    act(w, need["need_id"], "assign", actor="desk-01", unit="劳动监察大队")
    real_write, raced = w.store.apply_change, []

    def write_after_a_rival(current, fields):
        if not raced:
            raced.append(True)
            act(w, need["need_id"], "start", actor="dispatch")  # the rival gets there first
        return real_write(current, fields)

    w.store.apply_change = write_after_a_rival
    resolved = act(w, need["need_id"], "resolve", actor="desk-01")
    w.store.apply_change = real_write
    stored = w.store.get(need["need_id"])
    assert resolved["status"] == stored["status"] == domain.RESOLVED and stored["version"] == 4
    assert [t["action"] for t in stored["timeline"]][-2:] == ["start", "resolve"]
    assert [e["type"] for e in outbox.discarded] == ["need.resolved", "wall.entry_changed"]
    assert outbox.types()[-4:] == ["need.started", "wall.entry_changed", "need.resolved", "wall.entry_changed"]
    assert outbox.staged == {}


def test_a_dispatch_event_moves_the_need_once_and_its_redelivery_changes_nothing(work):
    w, outbox = work
    need, _ = submit(w)
    task = {"need_id": need["need_id"], "task_id": need["need_id"] + ":task:1", "responder_id": "rsp_1",
            "member_id": "M-1", "note": None}
    envelope = {"type": "task.claimed", "id": "evt-1"}

    def moot(current, event):
        return current["status"] == domain.ASSIGNED and current.get("task_id") == event["task_id"]
    assert lifecycle.from_task(w, taxonomy(w), envelope, task, "assign", moot) is True
    assert lifecycle.from_task(w, taxonomy(w), envelope, task, "assign", moot) is False
    stored = w.store.get(need["need_id"])
    assert (stored["status"], stored["task_id"], stored["version"]) == (domain.ASSIGNED, task["task_id"], 2)
    assert outbox.types().count("need.assigned") == 1 and outbox.staged == {}

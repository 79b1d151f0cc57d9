"""The needs handler tests of tests/unit/test_needs_handlers.py, run against
the real repository (NeedsStore) on the MongoDB-protocol server: the
in-memory repository the unit run uses answers as this one does."""
import pytest

from services.needs.store import INDEXES, NeedsStore
from tests.integration.server_repos import server_store
from tests.unit.needs_repos import configured
from tests.unit.test_needs_handlers import (  # noqa: F401 (the same tests, and the fixture they share)
    test_a_change_that_loses_a_race_decides_again_on_what_the_winner_left,
    test_a_dispatch_event_moves_the_need_once_and_its_redelivery_changes_nothing,
    test_a_need_is_written_with_its_events_and_they_are_published_after,
    test_an_action_the_status_does_not_allow_is_refused_and_nothing_is_written_or_published,
    test_the_lifecycle_moves_a_version_at_a_time_and_replays_to_the_stored_state,
    test_the_same_key_answers_the_first_need_and_another_body_under_it_is_a_conflict,
    work,
)


@pytest.fixture
def repo(mongo_client, db_prefix):
    store = NeedsStore(server_store(mongo_client, db_prefix, "needs", INDEXES), "quanlinan")
    config = {k: v for k, v in configured().items() if k != "park_id"}
    assert store.park_config.install(config) == (1, False)
    return store


def test_a_wall_head_this_process_wrote_is_merged_into_without_a_read_and_read_again_once_moved_elsewhere(repo):
    from datetime import datetime, timedelta, timezone
    at = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)
    entry = lambda n, version=1: {"need_id": "n{}".format(n), "version": version,  # noqa: E731
                                  "updated_at": at + timedelta(seconds=n), "public": True}
    reads = []
    find_one = repo.wall_heads.find_one
    repo.wall_heads.find_one = lambda *a, **kw: reads.append(a) or find_one(*a, **kw)
    stored = lambda: [line["need_id"] for line in find_one({"_id": repo.key("wall-head")})["lines"]]  # noqa: E731

    first = repo.merge_wall_head(entry(1))
    assert len(reads) == 1 and first["version"] == 1
    second = repo.merge_wall_head(entry(2), first)
    assert len(reads) == 1, "a head this process wrote is not read again"
    assert second["version"] == 2 and stored() == ["n2", "n1"]
    assert repo.merge_wall_head(entry(2), second) == second  # a line already there: nothing written
    # another process moves the head: the known one is behind, its write loses, and it reads
    repo.merge_wall_head(entry(3))
    reads.clear()
    fourth = repo.merge_wall_head(entry(4), second)
    assert len(reads) == 1 and fourth["version"] == 4
    assert stored() == ["n4", "n3", "n2", "n1"] == [line["need_id"] for line in fourth["lines"]]

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

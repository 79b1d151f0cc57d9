"""The points handler tests of tests/unit/test_points_handlers.py, run against
the real repository (PointsStore) on the MongoDB-protocol server: the
in-memory repository the unit run uses answers as this one does."""
import uuid

import pytest

from services.points.store import INDEXES, PointsStore
from tests.integration.server_repos import server_store
from tests.unit.points_repos import catalogue
from tests.unit.test_points_handlers import (  # noqa: F401 (the same tests, and the fixture they share)
    test_a_first_posting_opens_the_year_at_12_and_crossing_9_is_published_with_it,
    test_a_redemption_holds_points_and_stock_and_one_it_cannot_afford_gives_the_stock_back,
    test_a_reopened_need_takes_back_what_its_closing_posted_once,
    test_a_rule_that_needs_approval_posts_nothing_until_another_person_approves,
    test_an_event_posts_by_the_parks_rules_once_and_a_cap_skips_what_is_over_it,
    test_the_same_key_returns_the_first_entry_and_another_body_under_it_is_refused,
    work,
)


@pytest.fixture
def repo(mongo_client, db_prefix):
    # a park of its own per test: this process's cache of catalogues is per park
    store = PointsStore(server_store(mongo_client, db_prefix, "points", INDEXES), "p" + uuid.uuid4().hex[:10])
    assert store.park_config.install(catalogue()) == (1, False)
    return store

"""The volunteers handler tests of tests/unit/test_volunteers_handlers.py, run
against the real repository (VolunteersStore) on the MongoDB-protocol server:
the in-memory repository the unit run uses answers as this one does."""
import pytest

from services.volunteers.store import INDEXES, PARTITIONED, VolunteersStore
from tests.integration.server_repos import server_store
from tests.unit.test_volunteers_handlers import (  # noqa: F401 (the same tests, and the fixtures they share)
    dispatch_rules,
    test_a_call_out_reaches_on_duty_and_squad_once_each_and_replies_are_counted,
    test_a_cancelled_need_withdraws_its_task_and_frees_the_holders_slot,
    test_a_claim_over_the_cap_is_refused_and_nothing_is_written,
    test_a_claim_that_loses_the_race_after_taking_its_slot_gives_the_slot_back,
    test_a_months_visits_are_planned_once_and_a_proof_closes_one,
    test_a_routed_need_is_offered_to_the_best_k_on_duty_and_a_redelivery_adds_nothing,
    test_expired_offers_go_to_the_next_k_on_the_sweep,
    test_the_first_claim_wins_and_the_loser_keeps_no_slot,
    work,
)
from tests.unit.volunteers_repos import configured


@pytest.fixture
def repo(mongo_client, db_prefix, dispatch_rules):
    store = VolunteersStore(server_store(mongo_client, db_prefix, "volunteers", INDEXES, PARTITIONED), "quanlinan")
    config = {k: v for k, v in configured(**dispatch_rules).items() if k != "park_id"}
    assert store.park_config.install(config) == (1, False)
    return store

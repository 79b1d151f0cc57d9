"""The notify handler tests of tests/unit/test_notify_handlers.py, run against
the real repository (NotifyStore) on the MongoDB-protocol server: the
in-memory repository the unit run uses answers as this one does."""
import uuid

import pytest

from services.notify.store import INDEXES, PARTITIONED, NotifyStore
from tests.integration.server_repos import server_store
from tests.unit.notify_repos import configured
from tests.unit.test_notify_handlers import (  # noqa: F401 (the same tests, and the fixtures they share)
    notify_config,
    providers,
    test_a_broadcast_is_accepted_once_per_key_and_fans_out_once,
    test_a_broadcast_writes_every_in_app_notice_before_the_sends_past_its_first_chunk,
    test_a_parks_rate_limit_caps_its_sends_in_a_second,
    test_a_provider_that_fails_is_retried_after_its_backoff_and_the_notice_is_sent_once,
    test_a_provider_that_refuses_falls_back_to_the_next_channel_and_the_last_refusal_fails_the_notice,
    test_an_event_becomes_one_notice_per_recipient_and_channel_and_a_redelivery_adds_none,
    work,
)


@pytest.fixture
def repo(mongo_client, db_prefix, notify_config):
    # a park of its own per test: this process's caches of profiles and templates are per park
    park_id = "p" + uuid.uuid4().hex[:10]
    store = NotifyStore(server_store(mongo_client, db_prefix, "notify", INDEXES, PARTITIONED), park_id)
    assert store.config.install(configured(**notify_config)) == (1, False)
    return store

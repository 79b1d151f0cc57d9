"""Fixtures shared by every kind of test.

Tests that need servers use the real RabbitMQ and MongoDB-protocol server of
the local stack (``./dev test`` starts them): a vhost per test from nameko's
``rabbit_config`` and a database prefix per test, dropped afterwards.
"""
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager

import pymongo
import pytest
from kombu import Connection
from nameko import config

MONGO_URI = os.environ.get("LAMPLIGHT_TEST_MONGO_URI", "mongodb://127.0.0.1:27018/")


def finds(service, collection):
    """How many finds ``service`` (its containers in this process) has sent to
    ``collection`` (lamplight_db_requests_total)."""
    from prometheus_client import REGISTRY
    return REGISTRY.get_sample_value("lamplight_db_requests_total", {
        "service": service, "command": "find", "collection": collection}) or 0.0


def finds_during(seconds, service, collection):
    """How many finds ``service`` (a container in this process) sent to ``collection``
    in the next ``seconds``."""
    before = finds(service, collection)
    time.sleep(seconds)
    return finds(service, collection) - before


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    """Poll until predicate() is truthy; return its value or fail naming what."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after {}s waiting for {}".format(timeout, what))
        time.sleep(interval)


def readyz(container):
    """(status, body) of an in-process container's /readyz (its Observability's probe server)."""
    from lamplight.observability import Observability

    (probe,) = [d for d in container.dependencies if isinstance(d, Observability)]
    try:
        with urllib.request.urlopen("http://{}/readyz".format(probe.address), timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


@pytest.fixture(scope="session")
def mongo_client():
    client = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=5000, tz_aware=True)
    client.admin.command("ping")
    yield client
    client.close()


@pytest.fixture
def db_prefix(mongo_client):
    prefix = "t{}_".format(uuid.uuid4().hex[:10])
    yield prefix
    for name in mongo_client.list_database_names():
        if name.startswith(prefix):
            mongo_client.drop_database(name)


@pytest.fixture
def service_config(rabbit_config, db_prefix):
    """Kernel config for containers under test: fast retries, relay on demand."""
    overrides = {
        "MONGO_URI": MONGO_URI,
        "MONGO_DB_PREFIX": db_prefix,
        "OBSERVABILITY_ADDRESS": "127.0.0.1:0",
        "EVENT_MAX_ATTEMPTS": 3,
        "EVENT_RETRY_DELAYS_MS": [50, 100],
        "OUTBOX_RELAY_INTERVAL_S": 3600,
        "OUTBOX_RELAY_GRACE_S": 3,
    }
    with config.patch(overrides):
        yield dict(config)


@pytest.fixture(scope="module")
def peers():
    """The notify channels' peers on 127.0.0.1 (tests/peers.py), one process per module."""
    from tests.peers import running_peers
    with running_peers() as running:
        yield running


@pytest.fixture
def db(mongo_client, db_prefix):
    """db('needs') is the needs service's database of this test."""
    return lambda service: mongo_client["{}{}".format(db_prefix, service)]


@pytest.fixture
def stack_env():
    """Settings of a test's stack (tests/stackfixtures.py) beyond its defaults; a module may override it."""
    return {}


@pytest.fixture
def broker(rabbit_config):
    """A kombu connection to this test's vhost, and helpers on it."""
    with Connection(config["AMQP_URI"]) as conn:
        yield Broker(conn)


class Broker:
    def __init__(self, conn):
        self.conn = conn

    def publish(self, exchange, routing_key, body, headers=None, mandatory=False):
        with Connection(self.conn.as_uri(include_password=True),
                        transport_options={"confirm_publish": True}) as conn:
            producer = conn.Producer()
            payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
            producer.publish(payload, exchange=exchange, routing_key=routing_key, headers=headers or {},
                             content_type="application/json", content_encoding="utf-8",
                             delivery_mode=2, mandatory=mandatory)

    @contextmanager
    def recording(self, exchange, patterns):
        """A queue of the test's own bound to ``exchange`` with ``patterns``;
        yields drain(subject=None): every (type, data) received so far, in
        order, of one subject or all."""
        channel = self.conn.channel()
        queue = "test-events-" + uuid.uuid4().hex[:8]
        channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
        channel.queue_declare(queue, auto_delete=False)
        for pattern in patterns:
            channel.queue_bind(queue, exchange, routing_key=pattern)
        seen = []

        def drain(subject=None):
            while True:
                message = channel.basic_get(queue, no_ack=True)
                if message is None:
                    break
                seen.append(json.loads(message.body))
            return [(e["type"], e["data"]) for e in seen if subject is None or e["subject"] == subject]

        drain.envelopes = seen  # the whole envelopes, as drained so far
        try:
            yield drain
        finally:
            channel.close()

    def depth(self, queue):
        channel = self.conn.channel()
        try:
            return channel.queue_declare(queue, passive=True).message_count
        finally:
            channel.close()

    def get(self, queue, ack=True):
        channel = self.conn.channel()
        try:
            msg = channel.basic_get(queue, no_ack=ack)
            return msg
        finally:
            channel.close()

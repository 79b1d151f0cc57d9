"""The platform as separate ``nameko run`` processes, for e2e and fault tests:
the same launcher as ``./dev up``, on its own ports, vhost and databases."""
import pytest
import requests

from lamplight_dev.devstack import Stack
from tests.conftest import MONGO_URI
from tests.parks import ALL_WEEK, needs_config, volunteers_config

TEST_PORT_BASE = 19100
TEST_WEB_PORT = 18000
PARK = "quanlinan"


@pytest.fixture
def stack(rabbit_uri, db_prefix, tmp_path, stack_env):
    stack = Stack(tmp_path / "run", TEST_PORT_BASE, TEST_WEB_PORT, env={
        "AMQP_URI": rabbit_uri,
        "MONGO_URI": MONGO_URI,
        "MONGO_DB_PREFIX": db_prefix,
        "RPC_TIMEOUT_S": "3",
        "OUTBOX_RELAY_GRACE_S": "1",
        "OUTBOX_RELAY_INTERVAL_S": "0.5",
        "EVENT_RETRY_DELAYS_MS": "100,200",
        **stack_env,  # a test module's own settings win
    })
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        print("service logs in", stack.log_dir)


class Api:
    """HTTP calls to one park's API with one credential."""

    def __init__(self, base, park=PARK, key=None):
        self.root = base
        self.base = "{}/api/v1/parks/{}".format(base, park)
        self.http = requests.Session()
        if key:
            self.http.headers["Authorization"] = "Bearer " + key

    def post(self, path, body=None, **kwargs):
        return self.http.post(self.base + path, json=body, timeout=30, **kwargs)

    def get(self, path, **kwargs):
        return self.http.get(self.base + path, timeout=30, **kwargs)

    def put(self, path, body=None, **kwargs):
        return self.http.put(self.base + path, json=body, timeout=30, **kwargs)

    def delete(self, path, **kwargs):
        return self.http.delete(self.base + path, timeout=30, **kwargs)


@pytest.fixture
def api(stack):
    """The gateway, for the demo park with its needs and volunteers configurations installed."""
    api = Api(stack.gateway_url, key=stack.admin_key())
    answer = api.put("/needs/config", needs_config())
    assert answer.status_code == 200, answer.text
    answer = api.put("/volunteers/config", volunteers_config())
    assert answer.status_code == 200, answer.text
    return api


VOLUNTEER = {"kind": "volunteer", "name": "张三", "phone": "13812345678", "teams": ["orange"],
             "skills": ["electrician"], "roster": ALL_WEEK}
NEED = {"kind": "micro_wish", "category": "daily_life", "item": "facilities_repair", "channel": "wish_wall",
        "details": {"location": "宿舍楼下"},
        "title": "宿舍楼下篮球场的灯坏了", "requester": {"kind": "worker", "name": "李四", "phone": "13900001111"}}

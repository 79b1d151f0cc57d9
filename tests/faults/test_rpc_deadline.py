"""What a 503 on timeout means, held under load.

The needs service is made slow on purpose (a failpoint waits 0.7 s after each
new need is written, with 4 workers) while 16 clients submit at once through the
gateway, whose deadline is 1 s. So some requests wait past their deadline
(dropped unrun when a worker takes them), and some are written but answered
late (503 all the same). The contract: a 503 means the outcome is unknown;
retrying with the same Idempotency-Key is always safe and ends with the one
need — 201 if this retry made it, 200 if an earlier attempt had."""
import random
import threading
import time

import pytest
import requests

from tests.stackfixtures import NEED, api, stack  # noqa: F401 (fixtures)

CLIENTS, NEEDS_EACH = 16, 3


@pytest.fixture
def stack_env():
    return {"RPC_TIMEOUT_S": "1"}


@pytest.fixture
def slow_needs(stack, api):
    """The needs service again, with 4 workers and 0.7 s after each write."""
    stack.stop("needs")
    stack.start("needs", {"MAX_WORKERS": "4", "LAMPLIGHT_FAILPOINTS": "needs.submit.after_write=sleep:0.7"})
    stack.wait_ready("needs")


def _metric(stack, service, name):
    text = requests.get(stack.probe_url(service, "/metrics"), timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_retrying_every_503_with_its_key_ends_with_exactly_one_need_per_key(stack, api, db, slow_needs):
    outcomes, lock = {}, threading.Lock()

    def client(n):
        for i in range(NEEDS_EACH):
            key = "load-{}-{}".format(n, i)
            body = dict(NEED, title="宿舍{}号楼{}层的灯坏了".format(n, i),
                        requester={"kind": "worker", "name": "工友{}-{}".format(n, i)})
            answers = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                answer = api.post("/needs", body, headers={"Idempotency-Key": key})
                answers.append(answer.status_code)
                if answer.status_code != 503:
                    break
                assert answer.headers.get("Retry-After"), "a 503 says when to retry"
                time.sleep(random.uniform(0.3, 1.5))  # a client backs off (sooner than Retry-After, to keep it short)
            with lock:
                outcomes[key] = (answers, answer.json().get("id"))

    import requests.adapters
    # a key of its own without a practical rate limit (retries come fast)
    api.http.headers["Authorization"] = "Bearer " + stack.admin_key(rate_limit="1000000/minute")
    api.http.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=CLIENTS))
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    keys = CLIENTS * NEEDS_EACH
    assert len(outcomes) == keys
    finals = [answers[-1] for answers, _ in outcomes.values()]
    assert all(status in (200, 201) for status in finals), finals
    retried = [answers for answers, _ in outcomes.values() if 503 in answers]
    # the load did what it is for: timeouts, some written before their 503 (then 200 on retry)
    assert retried, "no request timed out: the test did not load the service"
    written_before_503 = [a for a in retried if a[-1] == 200]
    assert written_before_503, "no 503 hid a written need: the test did not reach that case"
    # exactly one need per key, and each answer named it
    needs = list(db("needs").needs.find({"park_id": "quanlinan"}, {"need_id": 1, "idempotency_key": 1}))
    assert len(needs) == keys
    assert {need_id for _, need_id in outcomes.values()} == {n["need_id"] for n in needs}
    expired = _metric(stack, "needs", "lamplight_rpc_expired_total")
    assert expired > 0, "requests past their deadline were run instead of dropped"
    print("{} keys: {} retried after a 503, {} of them already written (200), {} requests dropped unrun".format(
        keys, len(retried), len(written_before_503), int(expired)))

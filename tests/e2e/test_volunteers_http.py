"""Dispatch over HTTP, every service its own process: a need offered to the
best K, claimed by one (the others refused with the task's state), started
and completed; each step moves the need, and the service hours reach the
points ledger."""
from tests.conftest import wait_for
from tests.stackfixtures import NEED, VOLUNTEER, api, stack  # noqa: F401 (fixtures)


def test_a_volunteer_claims_starts_and_completes_and_the_need_follows(api):
    ids = [api.post("/responders", dict(VOLUNTEER, external_ref="E{}".format(n), member_id="QLN-M9{}".format(n)))
           .json()["id"] for n in range(3)]
    need = api.post("/needs", NEED, headers={"Idempotency-Key": "e2e-claim-1"}).json()
    task_url = "/tasks/{}:task:1".format(need["id"])
    task = wait_for(lambda: (lambda r: r.json() if r.status_code == 200 else None)(api.get(task_url)),
                    what="the task")
    assert sorted(task["offers"]) == sorted(ids) and task["status"] == "offered"
    offered = wait_for(lambda: api.get("/responders/{}/tasks".format(ids[1])).json()["offered"], what="the offer")
    assert [t["task_id"] for t in offered] == [task["task_id"]]

    won = api.post(task_url + "/claim", {"responder_id": ids[1]})
    assert won.status_code == 200 and won.json()["status"] == "claimed"
    lost = api.post(task_url + "/claim", {"responder_id": ids[2]})
    assert lost.status_code == 409
    assert lost.json()["error"]["code"] == "already_taken" and lost.json()["error"]["fields"] == {"status": ["claimed"]}
    assert ids[1] not in lost.text
    wait_for(lambda: api.get("/needs/" + need["id"]).json()["status"] == "assigned", what="the need assigned")

    assert api.post(task_url + "/start", {"responder_id": ids[1]}).status_code == 200
    wait_for(lambda: api.get("/needs/" + need["id"]).json()["status"] == "in_progress", what="the need started")
    done = api.post(task_url + "/complete", {"responder_id": ids[1], "note": "换了灯管", "hours": 2,
                                             "photo_ref": "oss://photos/1.jpg", "place": "宿舍楼下"})
    assert done.status_code == 200 and done.json()["completion"]["hours"] == 2
    resolved = wait_for(lambda: (lambda n: n if n["status"] == "resolved" else None)(
        api.get("/needs/" + need["id"]).json()), what="the need resolved")
    assert resolved["responder_id"] == ids[1] and resolved["task_id"] == task["task_id"]
    assert api.get("/responders/{}/tasks".format(ids[1])).json() == {"held": [], "offered": []}

    bad = api.put("/responders/{}/roster".format(ids[0]), {"shifts": [{"day": "mon", "start": "18:00",
                                                                       "end": "09:00"}]})
    assert bad.status_code == 422 and "shifts" in bad.json()["error"]["fields"]
    unknown = api.post("/responders", dict(VOLUNTEER, teams=["purple"], skills=["juggling"]))
    assert unknown.status_code == 422 and set(unknown.json()["error"]["fields"]) == {"teams", "skills"}
    on_duty = api.get("/on-duty").json()
    assert on_duty["count"] == 3

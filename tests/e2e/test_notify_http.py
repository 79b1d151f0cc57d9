"""Notices over HTTP, every service its own process and the providers'
peers on 127.0.0.1: a need submitted at the gateway reaches the offered
volunteer by SMS and WeChat, the requester hears it was accepted, a red
broadcast reaches the park, and the delivery log tells each step."""
from tests.conftest import wait_for
from tests.stackfixtures import NEED, VOLUNTEER, api, stack  # noqa: F401 (fixtures)


def test_a_need_reaches_the_volunteers_phone_and_a_broadcast_reaches_the_park(api, peers):
    channels = peers.channels("tencent")
    channels["wechat"]["link"] = "https://park.example.cn/tasks/{subject}"
    answer = api.put("/notify/config", {"version": 1, "channels": channels, "retry": {"attempts": 2, "backoff_s": 0.2},
                                        "quiet": {"night": {"start": "03:00:00", "end": "03:00:01"}}})
    assert answer.status_code == 200, answer.text
    assert api.get("/notify/config").json()["channels"]["sms"]["secret_key"] == "********"
    volunteer = api.post("/responders", dict(VOLUNTEER, external_ref="E-notify", member_id="QLN-M77")).json()["id"]
    profile = api.put("/notify/recipients/" + volunteer, {"channels": ["wechat", "sms"],
                                                          "addresses": {"wechat": "oVolunteer01",
                                                                        "sms": "13912345678"}})
    assert profile.status_code == 200 and profile.json()["addresses"]["sms"] == "139****78"
    requester = api.put("/notify/recipients/worker-li", {"member_id": "QLN-M88", "channels": ["sms"],
                                                        "addresses": {"sms": "13900001111"}})
    assert requester.status_code == 200

    need = api.post("/needs", dict(NEED, requester=dict(NEED["requester"], member_id="QLN-M88")),
                    headers={"Idempotency-Key": "e2e-notify-1"}).json()
    sent = wait_for(lambda: [r for r in peers.requests("/wechat/cgi-bin/message/template/send")
                             if r["body"]["touser"] == "oVolunteer01"], what="the WeChat template message")
    assert sent[0]["verdict"] == "ok" and sent[0]["body"]["url"].endswith(":task:1")
    sms = wait_for(lambda: [r for r in peers.requests("/tencent") if "+8613900001111" in r["body"]["PhoneNumberSet"]],
                   what="the requester's SMS")
    assert sms[0]["verdict"] == "ok" and "诉求已受理" in sms[0]["body"]["TemplateParamSet"][0]
    inbox = api.get("/notify/recipients/{}/notices".format(volunteer)).json()
    assert inbox["count"] == 1 and inbox["notices"][0]["subject"] == need["id"] + ":task:1"
    log = api.get("/notify/deliveries", params={"recipient": volunteer}).json()["deliveries"]
    assert [(x["channel"], x["status"]) for x in log if x["channel"] == "wechat"] == [
        ("wechat", "queued"), ("wechat", "sending"), ("wechat", "sent")]

    body = {"title": "红色广播", "body": "园区职工子女入学登记本周五截止。", "actor": "desk-1"}
    accepted = api.post("/notify/broadcasts", body, headers={"Idempotency-Key": "e2e-red-1"})
    assert accepted.status_code == 202, accepted.text
    again = api.post("/notify/broadcasts", body, headers={"Idempotency-Key": "e2e-red-1"})
    assert again.status_code == 200 and again.json()["broadcast_id"] == accepted.json()["broadcast_id"]
    missing_key = api.post("/notify/broadcasts", body)
    assert missing_key.status_code == 422 and "Idempotency-Key" in missing_key.json()["error"]["fields"]
    done = wait_for(lambda: (lambda b: b if b["status"] == "done" else None)(
        api.get(accepted.headers["Location"].split("/quanlinan", 1)[1]).json()), what="the fan-out")
    assert done["recipients"] == 2  # the two people the park knows: the volunteer and the worker
    assert any(n["title"] == "红色广播" for n in api.get("/notify/recipients/worker-li/notices").json()["notices"])

    bad = api.put("/notify/templates/need.triaged/zh-CN", {"title": "受理", "body": "{{ summery }}"})
    assert bad.status_code == 422 and "summery" in bad.json()["error"]["message"]
    assert bad.json()["error"]["fields"]["body"]

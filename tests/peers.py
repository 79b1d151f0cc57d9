"""Local peers for the notify channels, run as their own process on 127.0.0.1.

An HTTP server that plays Aliyun SMS, Tencent Cloud SMS, the WeChat
official-account API and a webhook receiver, and checks each request the way
the provider does — required parameters, formats, and the signature,
computed here from the provider's documented algorithm independently of
the adapters under test — and an SMTP server (aiosmtpd) that keeps what it
receives. Every request is recorded with its verdict:

    GET  /_peer/requests?prefix=/aliyun   what arrived, with "verdict": "ok" or the problem
    GET  /_peer/mails                     what the SMTP server received
    POST /_peer/fail {"prefix", "status", "times", "body"}   answer the next requests with an error
                                          (or with ``body``, JSON, at ``status``: an answer out of spec)

    python -m tests.peers --http-port 18101 --smtp-port 18102 --secrets '{...}'
"""
import argparse
import base64
import hashlib
import hmac
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from email import message_from_bytes, policy
from urllib.parse import quote, urlencode

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

SECRETS = {
    "aliyun": {"access_key_id": "LTAI-test-key", "access_key_secret": "aliyun-test-secret-0123"},
    "tencent": {"secret_id": "AKID-test-id", "secret_key": "tencent-test-secret-0123", "sdk_app_id": "1400000001"},
    "wechat": {"app_id": "wx0123456789abcdef", "app_secret": "wechat-test-secret-0123"},
    "webhook": {"secret": "webhook-test-secret-0123"},
}
MAINLAND_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
FRESH_S = 900


class Peer:
    def __init__(self, secrets):
        self.secrets = secrets
        self.requests = []
        self.mails = []
        self.failures = []  # [prefix, status, times left]
        self.slow = {}  # prefix -> seconds each request waits before its answer
        self.tokens = set()
        self.nonces = set()
        self.lock = threading.Lock()

    # the WSGI app -------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.route(request)
        return response(environ, start_response)

    def route(self, request):
        path = request.path
        if path == "/_peer/requests":
            prefix = request.args.get("prefix", "")
            with self.lock:
                return _json([r for r in self.requests if r["path"].startswith(prefix)])
        if path == "/_peer/slow":
            ask = request.get_json()
            with self.lock:
                self.slow[ask["prefix"]] = float(ask["seconds"])
            return _json({"ok": True})
        if path == "/_peer/mails":
            with self.lock:
                return _json(self.mails)
        if path == "/_peer/fail":
            ask = request.get_json()
            with self.lock:
                self.failures.append([ask["prefix"], int(ask.get("status", 500)), int(ask.get("times", 1)),
                                      ask.get("body")])
            return _json({"ok": True})
        body = request.get_data()
        entry = {"path": path, "method": request.method, "at": time.time(),
                 "headers": {k: v for k, v in request.headers.items()}}
        injected = self._injected(path)
        if injected:
            status, answer = injected
            entry["verdict"] = "injected {}".format(status)
            self._keep(entry)
            if answer is not None:
                return _json(answer, status)
            return Response("provider trouble (injected)", status=status)
        handlers = (("/aliyun", self.aliyun), ("/tencent", self.tencent), ("/wechat/cgi-bin/token", self.wechat_token),
                    ("/wechat/cgi-bin/message/template/send", self.wechat_send), ("/webhook", self.webhook))
        for prefix, handler in handlers:
            if path.startswith(prefix):
                verdict, response, parsed = handler(request, body)
                entry.update(verdict=verdict, body=parsed)
                self._keep(entry)  # seen as it arrives, answered after any wait asked for
                time.sleep(self._delay(path))
                return response
        return Response("no such peer", status=404)

    def _injected(self, path):
        with self.lock:
            for failure in self.failures:
                if path.startswith(failure[0]) and failure[2] > 0:
                    failure[2] -= 1
                    return failure[1], failure[3]
        return None

    def _delay(self, path):
        with self.lock:
            return max([s for prefix, s in self.slow.items() if path.startswith(prefix)], default=0.0)

    def _keep(self, entry):
        with self.lock:
            self.requests.append(entry)

    # Aliyun SMS: RPC style, HMAC-SHA1 signature 1.0 -----------------------------------------
    def aliyun(self, request, body):
        params = request.form.to_dict() if request.method == "POST" else request.args.to_dict()
        verdict = self._aliyun_problem(request.method, params)
        if verdict:
            return verdict, _json({"Code": "InvalidParameter", "Message": verdict, "RequestId": "peer"}, 400), params
        return "ok", _json({"Code": "OK", "Message": "OK", "BizId": "biz{}".format(len(self.requests)),
                            "RequestId": "peer"}), params

    def _aliyun_problem(self, method, params):
        wanted = ("AccessKeyId", "Action", "Format", "SignatureMethod", "SignatureNonce", "SignatureVersion",
                  "Timestamp", "Version", "Signature", "PhoneNumbers", "SignName", "TemplateCode")
        missing = [k for k in wanted if not params.get(k)]
        if missing:
            return "missing parameters: {}".format(", ".join(missing))
        fixed = {"Action": "SendSms", "Version": "2017-05-25", "SignatureMethod": "HMAC-SHA1",
                 "SignatureVersion": "1.0", "Format": "JSON"}
        wrong = [k for k, v in fixed.items() if params[k] != v]
        if wrong:
            return "wrong values: {}".format(", ".join(wrong))
        if params["AccessKeyId"] != self.secrets["aliyun"]["access_key_id"]:
            return "unknown AccessKeyId"
        try:
            stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return "Timestamp is not yyyy-MM-ddTHH:mm:ssZ in UTC"
        if abs(time.time() - stamp.timestamp()) > FRESH_S:
            return "Timestamp too far from now"
        with self.lock:
            if params["SignatureNonce"] in self.nonces:
                return "SignatureNonce used before"
            self.nonces.add(params["SignatureNonce"])
        numbers = params["PhoneNumbers"].split(",")
        if not all(MAINLAND_MOBILE.match(n) for n in numbers):
            return "PhoneNumbers holds a number that is not a mainland mobile number"
        if "TemplateParam" in params:
            try:
                if not isinstance(json.loads(params["TemplateParam"]), dict):
                    return "TemplateParam is not a JSON object"
            except ValueError:
                return "TemplateParam is not JSON"
        signed = {k: v for k, v in params.items() if k != "Signature"}
        canonical = urlencode(sorted(signed.items()), quote_via=quote, safe="~")
        string_to_sign = method + "&%2F&" + quote(canonical, safe="~")
        key = (self.secrets["aliyun"]["access_key_secret"] + "&").encode()
        expected = base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected, params["Signature"]):
            return "SignatureDoesNotMatch"
        return None

    # Tencent Cloud SMS 2021-01-11: TC3-HMAC-SHA256 ---------------------------------------------
    def tencent(self, request, body):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        verdict = self._tencent_problem(request, body, payload)
        if verdict:
            return verdict, _json({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure"
                                                          if "signature" in verdict else "InvalidParameter",
                                                          "Message": verdict}, "RequestId": "peer"}}), payload
        # a number of the reserved test range 1380000xxxx is refused on its own, as Tencent
        # reports a number it cannot reach in that number's status
        statuses = [{"SerialNo": "serial{}".format(len(self.requests)), "PhoneNumber": n, "Fee": 1,
                     "Code": "Ok", "Message": "send success"} if not n.startswith("+861380000") else
                    {"SerialNo": "", "PhoneNumber": n, "Fee": 0, "Code": "InvalidParameterValue.IncorrectPhoneNumber",
                     "Message": "incorrect phone number"} for n in payload["PhoneNumberSet"]]
        return "ok", _json({"Response": {"SendStatusSet": statuses, "RequestId": "peer"}}), payload

    def _tencent_problem(self, request, body, payload):
        headers = request.headers
        if headers.get("X-TC-Action") != "SendSms" or headers.get("X-TC-Version") != "2021-01-11":
            return "X-TC-Action must be SendSms and X-TC-Version 2021-01-11"
        if not headers.get("X-TC-Region"):
            return "X-TC-Region missing"
        try:
            stamp = int(headers.get("X-TC-Timestamp", ""))
        except ValueError:
            return "X-TC-Timestamp is not a Unix time"
        if abs(time.time() - stamp) > FRESH_S:
            return "X-TC-Timestamp too far from now"
        if not isinstance(payload, dict):
            return "the body is not a JSON object"
        for key in ("PhoneNumberSet", "SmsSdkAppId", "SignName", "TemplateId"):
            if not payload.get(key):
                return "missing {}".format(key)
        if payload["SmsSdkAppId"] != self.secrets["tencent"]["sdk_app_id"]:
            return "unknown SmsSdkAppId"
        if not all(re.match(r"^\+86" + MAINLAND_MOBILE.pattern[1:], n) for n in payload["PhoneNumberSet"]):
            return "PhoneNumberSet holds a number not in E.164 (+86...)"
        if not all(isinstance(p, str) for p in payload.get("TemplateParamSet", [])):
            return "TemplateParamSet must hold strings"
        return self._tencent_signature_problem(headers, body, stamp)

    def _tencent_signature_problem(self, headers, body, stamp):
        match = re.match(r"^TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/sms/tc3_request, "
                         r"SignedHeaders=([a-z;-]+), Signature=([0-9a-f]{64})$", headers.get("Authorization", ""))
        if not match:
            return "Authorization is not TC3-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…"
        secret_id, day, signed_headers, signature = match.groups()
        if secret_id != self.secrets["tencent"]["secret_id"]:
            return "unknown SecretId"
        if day != datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d"):
            return "the credential's date is not the timestamp's UTC date"
        canonical_headers = "".join("{}:{}\n".format(h, headers.get(h, "").strip().lower())
                                    for h in signed_headers.split(";"))
        canonical_request = "\n".join(["POST", "/", "", canonical_headers, signed_headers,
                                       hashlib.sha256(body).hexdigest()])
        string_to_sign = "\n".join(["TC3-HMAC-SHA256", str(stamp), "{}/sms/tc3_request".format(day),
                                    hashlib.sha256(canonical_request.encode()).hexdigest()])
        key = ("TC3" + self.secrets["tencent"]["secret_key"]).encode()
        for part in (day, "sms", "tc3_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "signature does not match"
        return None

    # WeChat official account ------------------------------------------------------------------
    def wechat_token(self, request, body):
        args = request.args
        creds = self.secrets["wechat"]
        if args.get("grant_type") != "client_credential":
            return "grant_type must be client_credential", _json({"errcode": 40002, "errmsg": "invalid grant_type"}), {}
        if args.get("appid") != creds["app_id"] or args.get("secret") != creds["app_secret"]:
            return "wrong appid or secret", _json({"errcode": 40125, "errmsg": "invalid appsecret"}), {}
        token = "token{}".format(len(self.tokens) + 1)
        with self.lock:
            self.tokens.add(token)
        return "ok", _json({"access_token": token, "expires_in": 7200}), {}

    def wechat_send(self, request, body):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if request.args.get("access_token") not in self.tokens:
            return "invalid access_token", _json({"errcode": 40001, "errmsg": "invalid credential"}), payload
        problem = self._template_problem(payload)
        if problem:
            return problem, _json({"errcode": 47003, "errmsg": "argument invalid! " + problem}), payload
        return "ok", _json({"errcode": 0, "errmsg": "ok", "msgid": 200000 + len(self.requests)}), payload

    @staticmethod
    def _template_problem(payload):
        if not isinstance(payload, dict):
            return "the body is not a JSON object"
        if not payload.get("touser") or not payload.get("template_id"):
            return "touser and template_id are required"
        data = payload.get("data")
        if not isinstance(data, dict) or not data:
            return "data must be an object of keywords"
        for key, value in data.items():
            if not isinstance(value, dict) or not isinstance(value.get("value"), str):
                return "data.{} must be {{\"value\": string}}".format(key)
            if key.startswith("thing") and len(value["value"]) > 20:
                return "data.{} is a thing of more than 20 characters".format(key)
            if key.startswith("time") and not re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$", value["value"]):
                return "data.{} is not a time yyyy-MM-dd HH:mm".format(key)
        return None

    # webhook receiver ------------------------------------------------------------------------
    def webhook(self, request, body):
        stamp = request.headers.get("X-Lamplight-Timestamp", "")
        given = request.headers.get("X-Lamplight-Signature", "")
        key = self.secrets["webhook"]["secret"].encode()
        expected = "sha256=" + hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > FRESH_S:
            return "stale or missing timestamp", Response("stale", status=401), payload
        if not hmac.compare_digest(expected, given):
            return "signature does not match", Response("bad signature", status=401), payload
        if not request.headers.get("X-Lamplight-Notice-Id"):
            return "no notice id", Response("no notice id", status=400), payload
        return "ok", Response(status=204), payload


class MailKeeper:
    """aiosmtpd handler: keeps each message it is given."""

    def __init__(self, peer):
        self.peer = peer

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.peer.lock:
            self.peer.mails.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                    "subject": str(message["Subject"]), "notice_id": message["X-Lamplight-Notice-Id"],
                                    "body": message.get_content(), "at": time.time()})
        return "250 Message accepted for delivery"


def _json(payload, status=200):
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json")


class KeepAlive(WSGIRequestHandler):
    """HTTP/1.1: a client's connection serves many requests, as the providers' do
    (werkzeug's default, HTTP/1.0, closes each)."""

    protocol_version = "HTTP/1.1"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    args = parser.parse_args()
    from aiosmtpd.controller import Controller

    peer = Peer(SECRETS)
    smtp = Controller(MailKeeper(peer), hostname="127.0.0.1", port=args.smtp_port)
    smtp.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = make_server("127.0.0.1", args.http_port, peer, threaded=True, request_handler=KeepAlive)
    try:
        server.serve_forever()
    finally:
        smtp.stop()


# for tests: the peers as a subprocess ---------------------------------------------------------
ROOT = __file__.rsplit("/tests/", 1)[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peers:
    def __init__(self):
        self.http_port, self.smtp_port = free_port(), free_port()
        self.base = "http://127.0.0.1:{}".format(self.http_port)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.peers", "--http-port", str(self.http_port),
                                      "--smtp-port", str(self.smtp_port)], cwd=ROOT)

    def requests(self, prefix="/"):
        return requests.get(self.base + "/_peer/requests", params={"prefix": prefix}, timeout=5).json()

    def mails(self):
        return requests.get(self.base + "/_peer/mails", timeout=5).json()

    def fail(self, prefix, status=500, times=1, body=None):
        requests.post(self.base + "/_peer/fail", json={"prefix": prefix, "status": status, "times": times,
                                                        "body": body}, timeout=5)

    def slow(self, prefix, seconds):
        """Requests to paths under ``prefix`` answered ``seconds`` after they arrive."""
        requests.post(self.base + "/_peer/slow", json={"prefix": prefix, "seconds": seconds}, timeout=5)

    def up(self):
        try:
            self.requests()
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1):
                return True
        except OSError:
            return False

    def channels(self, sms="aliyun"):
        sms_settings = {"provider": sms, "endpoint": self.base + "/" + sms + "/", "sign_name": "园区党群服务中心",
                        "template_code": "SMS_0001"}
        sms_settings.update({k: v for k, v in SECRETS[sms].items()})
        return {
            "email": {"host": "127.0.0.1", "port": self.smtp_port, "sender": "centre@park.example.cn"},
            "webhook": {"secret": SECRETS["webhook"]["secret"]},
            "sms": sms_settings,
            "wechat": dict(SECRETS["wechat"], endpoint=self.base + "/wechat", template_id="TPL-notice-0001"),
        }


@contextmanager
def running_peers():
    peers = Peers()
    try:
        deadline = time.monotonic() + 20
        while not peers.up():
            if time.monotonic() > deadline:
                raise RuntimeError("the channel peers did not start")
            time.sleep(0.1)
        yield peers
    finally:
        peers.proc.terminate()
        peers.proc.wait(10)


if __name__ == "__main__":
    main()

"""Channel adapters: one interface, one class per provider.

``send(notice, address, settings)`` returns the provider's message id or
raises :class:`SendFailed` saying whether trying again can help. Endpoints are
part of each park's channel settings, so a park can point a channel at its
own provider account, and tests point them at peers on 127.0.0.1.

The request formats are the providers' documented ones: Aliyun SMS
``SendSms`` (RPC style, HMAC-SHA1 signature v1.0), Tencent Cloud SMS
``SendSms`` 2021-01-11 (TC3-HMAC-SHA256), the WeChat official account's
template message (``cgi-bin/message/template/send`` with an access token
from ``cgi-bin/token``), SMTP, and a webhook signed with HMAC-SHA256 over
``<timestamp>.<body>``.
"""
import base64
import hashlib
import hmac
import json
import smtplib
import time
import uuid
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import quote, urlsplit

import requests

SIGNATURE_HEADER = "X-Lamplight-Signature"
TIMESTAMP_HEADER = "X-Lamplight-Timestamp"
NOTICE_HEADER = "X-Lamplight-Notice-Id"


class SendFailed(Exception):
    def __init__(self, reason, retryable=True):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def _http_failure(response, provider):
    # 5xx and 429 pass; any other 4xx is our request's fault and will not pass on a retry
    retryable = response.status_code >= 500 or response.status_code == 429
    return SendFailed("{} answered HTTP {}: {}".format(provider, response.status_code, response.text[:200]),
                      retryable)


def _post(session, url, provider, timeout, **kwargs):
    try:
        return session.post(url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        raise SendFailed("{} unreachable: {}".format(provider, type(exc).__name__))


class Channel:
    name = None
    # how many notices one request may carry (see BatchSms): 1, one request each
    batch_limit = 1

    def __init__(self, session=None):
        self.http = session or requests.Session()

    def send(self, notice, address, settings):
        raise NotImplementedError



class Email(Channel):
    name = "email"

    def send(self, notice, address, settings):
        message = EmailMessage()
        message["From"] = settings["sender"]
        message["To"] = address
        message["Subject"] = notice["title"]
        message["Message-ID"] = make_msgid(domain=settings.get("domain", "lamplight.local"))
        message["X-Lamplight-Notice-Id"] = notice["_id"]
        message.set_content(notice["body"])
        try:
            with smtplib.SMTP(settings["host"], settings["port"], timeout=settings.get("timeout_s", 10)) as smtp:
                if settings.get("starttls"):
                    smtp.starttls()
                if settings.get("username"):
                    smtp.login(settings["username"], settings["password"])
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise SendFailed("mail server refused {}: {}".format(address, exc.recipients), retryable=False)
        except smtplib.SMTPResponseException as exc:
            raise SendFailed("mail server answered {} {}".format(exc.smtp_code, exc.smtp_error[:200]),
                             retryable=exc.smtp_code < 500)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed("mail server unreachable: {}: {}".format(type(exc).__name__, exc))
        if refused:
            raise SendFailed("mail server refused {}".format(sorted(refused)), retryable=False)
        return message["Message-ID"]


def webhook_signature(secret, timestamp, body):
    mac = hmac.new(secret.encode(), "{}.".format(timestamp).encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Webhook(Channel):
    """POST the notice as JSON. The receiver checks ``X-Lamplight-Signature``
    (HMAC-SHA256 of ``<X-Lamplight-Timestamp>.<body>`` with the park's
    secret) and can drop a repeat by ``X-Lamplight-Notice-Id``."""

    name = "webhook"

    def send(self, notice, address, settings):
        body = json.dumps({
            "notice_id": notice["_id"], "park_id": notice["park_id"], "recipient_id": notice["recipient_id"],
            "type": notice["type"], "topic": notice["topic"], "priority": notice["priority"],
            "subject": notice.get("subject"), "title": notice["title"], "body": notice["body"],
            "created_at": notice["created_at"].isoformat(),
        }, ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: webhook_signature(settings["secret"], timestamp, body),
                   NOTICE_HEADER: notice["_id"]}
        response = _post(self.http, address, "webhook receiver", settings.get("timeout_s", 5),
                         data=body, headers=headers)
        if not 200 <= response.status_code < 300:
            raise _http_failure(response, "webhook receiver")
        return response.headers.get("X-Request-Id") or notice["_id"]


def _sms_text(notice):
    return "{}：{}".format(notice["title"], notice["body"])[:300]


def aliyun_encode(value):
    """Aliyun's percent-encoding: RFC 3986 (space %20, * %2A, ~ kept)."""
    return quote(str(value), safe="~")


def aliyun_signature(secret, method, params):
    canonical = "&".join("{}={}".format(aliyun_encode(k), aliyun_encode(params[k])) for k in sorted(params))
    to_sign = "{}&{}&{}".format(method, aliyun_encode("/"), aliyun_encode(canonical))
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class BatchSms(Channel):
    """An SMS provider that takes many numbers with the same text in one request."""

    name = "sms"

    def batch_key(self, notice):
        return _sms_text(notice)

    def send(self, notice, address, settings):
        result = self.send_many([(notice, address)], settings)[0]
        if isinstance(result, SendFailed):
            raise result
        return result

    def send_many(self, items, settings):
        """[(notice, address)] of one batch_key in one request: for each, the provider's id or
        the SendFailed that concerns it alone (a failure of the whole request is raised)."""
        raise NotImplementedError


class AliyunSms(BatchSms):
    """``SendSms``; many numbers with the same text go in one request (``PhoneNumbers``
    takes up to 1,000, comma-separated: we send at most 100, so that one refusal touches few)."""

    batch_limit = 100

    def send_many(self, items, settings):
        notice = items[0][0]
        params = {
            "AccessKeyId": settings["access_key_id"], "Action": "SendSms", "Format": "JSON",
            "RegionId": settings.get("region") or "cn-hangzhou", "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
            "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": "2017-05-25",
            "PhoneNumbers": ",".join(address for _, address in items), "SignName": settings["sign_name"],
            "TemplateCode": settings["template_code"],
            "TemplateParam": json.dumps({"content": _sms_text(notice)}, ensure_ascii=False),
            "OutId": notice["_id"][-64:],
        }
        params["Signature"] = aliyun_signature(settings["access_key_secret"], "POST", params)
        response = _post(self.http, settings["endpoint"], "Aliyun SMS", settings.get("timeout_s", 5), data=params)
        if response.status_code != 200:
            raise _http_failure(response, "Aliyun SMS")
        answer = _json(response, "Aliyun SMS")
        if answer.get("Code") != "OK":
            # throttling passes with time; a bad number or template does not
            retryable = "LIMIT" in str(answer.get("Code")) or answer.get("Code") == "isp.SYSTEM_ERROR"
            raise SendFailed("Aliyun SMS refused: {} {}".format(answer.get("Code"), answer.get("Message")), retryable)
        return [answer.get("BizId")] * len(items)  # one BizId for the request; receipts follow per number


def tc3_signature(secret_key, service, timestamp, canonical_request):
    day = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    scope = "{}/{}/tc3_request".format(day, service)
    to_sign = "TC3-HMAC-SHA256\n{}\n{}\n{}".format(
        timestamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest())

    def mac(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signing = mac(mac(mac(("TC3" + secret_key).encode(), day), service), "tc3_request")
    return scope, hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()


class TencentSms(BatchSms):
    """``SendSms``: up to 200 numbers with the same template parameters in one request, each
    with a status of its own in the answer."""

    batch_limit = 200
    CONTENT_TYPE = "application/json; charset=utf-8"

    def send_many(self, items, settings):
        notice = items[0][0]
        host = settings.get("host") or urlsplit(settings["endpoint"]).netloc
        phones = [address if address.startswith("+") else "+86" + address for _, address in items]
        payload = json.dumps({
            "PhoneNumberSet": phones, "SmsSdkAppId": settings["sdk_app_id"], "SignName": settings["sign_name"],
            "TemplateId": settings["template_code"], "TemplateParamSet": [_sms_text(notice)],
            "SessionContext": notice["_id"][-128:],
        }, ensure_ascii=False)
        timestamp = int(time.time())
        canonical = "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}".format(
            self.CONTENT_TYPE, host, hashlib.sha256(payload.encode()).hexdigest())
        scope, signature = tc3_signature(settings["secret_key"], "sms", timestamp, canonical)
        headers = {
            "Authorization": "TC3-HMAC-SHA256 Credential={}/{}, SignedHeaders=content-type;host, Signature={}".format(
                settings["secret_id"], scope, signature),
            "Content-Type": self.CONTENT_TYPE, "Host": host, "X-TC-Action": "SendSms",
            "X-TC-Timestamp": str(timestamp), "X-TC-Version": "2021-01-11",
            "X-TC-Region": settings.get("region") or "ap-guangzhou",
        }
        response = _post(self.http, settings["endpoint"], "Tencent SMS", settings.get("timeout_s", 5),
                         data=payload.encode(), headers=headers)
        if response.status_code != 200:
            raise _http_failure(response, "Tencent SMS")
        answer = _json(response, "Tencent SMS").get("Response", {})
        if "Error" in answer:
            error = answer["Error"]
            retryable = error.get("Code", "").startswith(("InternalError", "RequestLimitExceeded"))
            raise SendFailed("Tencent SMS refused: {} {}".format(error.get("Code"), error.get("Message")), retryable)
        # one status per number; a number sent to twice has a status for each time
        statuses = {}
        for status in answer.get("SendStatusSet") or []:
            statuses.setdefault(status.get("PhoneNumber"), []).append(status)
        results = []
        for phone in phones:
            waiting = statuses.get(phone)
            status = waiting.pop(0) if waiting else {}
            if status.get("Code") == "Ok":
                results.append(status.get("SerialNo"))
            else:
                results.append(SendFailed("Tencent SMS refused {}: {} {}".format(
                    phone, status.get("Code", "no status"), status.get("Message", "")),
                    retryable="LimitExceeded" in str(status.get("Code")) or not status))
        return results


def _json(response, provider):
    try:
        return response.json()
    except ValueError:
        raise SendFailed("{} answered with something that is not JSON".format(provider))


class WeChat(Channel):
    """Template messages of the official account. The access token is kept
    per app id until a minute before it expires, and fetched again when the
    platform says it expired or is invalid (errcode 40001, 42001)."""

    name = "wechat"
    STALE_TOKEN = (40001, 40014, 42001)
    # the new-style keyword types: thing.DATA holds at most 20 characters
    THING_MAX = 20

    def __init__(self, session=None):
        super().__init__(session)
        self._tokens = {}

    def _token(self, settings, fresh=False):
        key = (settings["endpoint"], settings["app_id"])
        token, expires = self._tokens.get(key, (None, 0))
        if token and not fresh and time.monotonic() < expires:
            return token
        try:
            response = self.http.get(settings["endpoint"].rstrip("/") + "/cgi-bin/token", timeout=5, params={
                "grant_type": "client_credential", "appid": settings["app_id"], "secret": settings["app_secret"]})
        except requests.RequestException as exc:
            raise SendFailed("WeChat unreachable: {}".format(type(exc).__name__))
        if response.status_code != 200:
            raise _http_failure(response, "WeChat token")
        answer = _json(response, "WeChat token")
        if "access_token" not in answer:
            raise SendFailed("WeChat refused the token: {} {}".format(answer.get("errcode"), answer.get("errmsg")),
                             retryable=answer.get("errcode") == -1)
        self._tokens[key] = (answer["access_token"], time.monotonic() + int(answer.get("expires_in", 7200)) - 60)
        return answer["access_token"]

    def _data(self, notice, settings):
        values = {"title": notice["title"], "body": notice["body"],
                  "time": notice["created_at"].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")}
        data = {}
        for key, what in (settings.get("fields") or {"thing1": "title", "thing2": "body", "time3": "time"}).items():
            value = values[what]
            if key.startswith("thing") and len(value) > self.THING_MAX:
                value = value[:self.THING_MAX - 1] + "…"
            data[key] = {"value": value}
        return data

    def send(self, notice, address, settings):
        body = {"touser": address, "template_id": settings["template_id"], "data": self._data(notice, settings),
                "client_msg_id": notice["_id"][-64:]}
        if settings.get("link"):
            body["url"] = settings["link"].format(subject=notice.get("subject") or "")
        for fresh in (False, True):
            url = settings["endpoint"].rstrip("/") + "/cgi-bin/message/template/send"
            response = _post(self.http, url, "WeChat", settings.get("timeout_s", 5),
                             params={"access_token": self._token(settings, fresh)},
                             data=json.dumps(body, ensure_ascii=False).encode(),
                             headers={"Content-Type": "application/json; charset=utf-8"})
            if response.status_code != 200:
                raise _http_failure(response, "WeChat")
            answer = _json(response, "WeChat")
            if answer.get("errcode") in self.STALE_TOKEN and not fresh:
                continue
            if answer.get("errcode", 0) != 0:
                raise SendFailed("WeChat refused: {} {}".format(answer.get("errcode"), answer.get("errmsg")),
                                 retryable=answer.get("errcode") in (-1, 45009) + self.STALE_TOKEN)
            return str(answer.get("msgid"))
        raise SendFailed("WeChat kept refusing the access token")  # pragma: no cover - loop returns or raises


def adapters(concurrency=10):
    """One adapter per channel; the SMS adapter is chosen by the park's provider.
    They share one session, which keeps a connection per concurrent send to a
    host (requests keeps 10 by default: past that, each send opened a
    connection of its own and closed it)."""
    session = requests.Session()
    keep = requests.adapters.HTTPAdapter(pool_connections=10, pool_maxsize=max(10, concurrency))
    session.mount("http://", keep)
    session.mount("https://", keep)
    return {"email": Email(session), "webhook": Webhook(session), "wechat": WeChat(session),
            "sms": {"aliyun": AliyunSms(session), "tencent": TencentSms(session)}}


def adapter_for(registry, channel, settings):
    adapter = registry[channel]
    return adapter[settings["provider"]] if isinstance(adapter, dict) else adapter

"""Notify: pure rules, no I/O.

The foundation delivers one channel, the in-app inbox. A notice is keyed by
(event, recipient, channel), so a duplicate delivery of the event cannot make
a second notice.
"""
INAPP = "inapp"

# zh-CN first: the people served read Chinese.
TEMPLATES = {
    ("task.offered", "zh-CN"): ("新的服务任务", "有一项需求等您认领：{summary}（类别：{category}，办理时限：{due_at}）。"),
    ("task.offered", "en"): ("New task offered", "A need is waiting for you: {summary} (category {category}, due {due_at})."),
}


def notice_id(event_id, recipient_id, channel):
    return "{}:{}:{}".format(event_id, recipient_id, channel)


def render(event_type, data, locale="zh-CN"):
    title, body = TEMPLATES[(event_type, locale)]
    return title, body.format(**data)


def new_notice(envelope, recipient_id, channel, created_at, locale="zh-CN"):
    title, body = render(envelope["type"], envelope["data"], locale)
    return {
        "_id": notice_id(envelope["id"], recipient_id, channel),
        "park_id": envelope["parkid"],
        "recipient_id": recipient_id,
        "channel": channel,
        "topic": envelope["type"],
        "subject": envelope["subject"],
        "source_event_id": envelope["id"],
        "title": title,
        "body": body,
        "locale": locale,
        "read": False,
        "created_at": created_at,
        "status": "delivered",
    }

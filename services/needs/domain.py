"""Needs: pure rules, no I/O.

The complete lifecycle, taxonomy and time limits grow here with the needs
issue; the foundation holds intake: what a need is when it is accepted.
"""
import hashlib
import json
from datetime import timedelta

from lamplight.logs import mask_string

# Where needs come in (DOMAIN.md, "Needs intake").
CHANNELS = (
    "official_account", "qq_group", "wish_wall", "hotline", "walk_in",
    "liaison_meeting", "need_card", "survey", "door_knocking",
)
# Wuhan's "four services": who asks.
REQUESTER_KINDS = ("enterprise", "talent", "member", "worker")
NEED_KINDS = ("micro_wish", "urgent_matter", "enterprise_request", "complaint")

# Default urgency grades and their time limits. A park's own grades replace
# these once park configuration exists.
DEFAULT_GRADES = {
    "urgent": timedelta(hours=24),
    "priority": timedelta(days=3),
    "routine": timedelta(days=7),
}
DEFAULT_GRADE_BY_KIND = {
    "urgent_matter": "urgent",
    "complaint": "priority",
    "enterprise_request": "priority",
    "micro_wish": "routine",
}

SUBMITTED = "submitted"


def grade_for(kind, requested_grade=None):
    return requested_grade or DEFAULT_GRADE_BY_KIND[kind]


def due_at(grade, submitted_at):
    return submitted_at + DEFAULT_GRADES[grade]


def fingerprint(submission):
    """Stable digest of a command body, to tell a retried request (same key,
    same body) from a reused key (same key, other body)."""
    canonical = json.dumps(submission, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def public_summary(title):
    """The title as others may see it: phone and ID numbers masked."""
    return mask_string(title)


def open_need(need_id, park_id, submission, submitted_at, idempotency_key=None):
    grade = grade_for(submission["kind"], submission.get("grade"))
    return {
        "_id": need_id,
        "park_id": park_id,
        "status": SUBMITTED,
        "kind": submission["kind"],
        "category": submission["category"],
        "item": submission.get("item"),
        "grade": grade,
        "channel": submission["channel"],
        "title": submission["title"],
        "description": submission.get("description", ""),
        "requester": submission["requester"],
        "entered_by": submission.get("entered_by"),
        "submitted_at": submitted_at,
        "due_at": due_at(grade, submitted_at),
        "idempotency_key": idempotency_key or need_id,
        "fingerprint": fingerprint(submission),
        "timeline": [{"at": submitted_at, "status": SUBMITTED, "note": "received via " + submission["channel"]}],
    }

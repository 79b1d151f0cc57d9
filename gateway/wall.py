"""The public echo wall (回音壁) as server-rendered pages, one per park.

No login and no personal data: what a page shows is the needs service's
wall view, which is built from an allow-list of fields with phone and ID
numbers masked. A visitor follows a need from its page; the browser keeps
an anonymous follower id (cookie ``ll_follower``) and the needs it follows
(cookie ``ll_following``), so the wall can show "我关注的" without an account.
"""
import re
import secrets
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from werkzeug.wrappers import Response

from lamplight.errors import BadInput, NotFound
from lamplight.rpc import ServiceUnavailable
from services.needs.domain import STATUS_LABELS

FOLLOWER_COOKIE = "ll_follower"
FOLLOWING_COOKIE = "ll_following"
MAX_FOLLOWING = 20
COOKIE_AGE_S = 365 * 24 * 3600
_FOLLOWER = re.compile(r"^web-[0-9a-f]{16}$")
_NEED_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
# the filters a visitor can pick, in the order of a need's life
CENTRE = "党群服务中心"
FILTERS = ("submitted", "triaged", "assigned", "in_progress", "escalated", "resolved", "closed", "rejected")

_env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _local(zone):
    def fmt(value, pattern="%Y-%m-%d %H:%M"):
        if not value:
            return ""
        return datetime.fromisoformat(value).astimezone(zone).strftime(pattern)
    return fmt


def _render(name, status=200, headers=None, **context):
    return Response(_env.get_template(name).render(**context), status=status, headers=headers,
                    mimetype="text/html")


def _guarded(fn):
    """A page answers a visitor in HTML: 404 and 503 included."""
    def page(gateway, request, park, *args):
        try:
            return fn(gateway, request, park, *args)
        except NotFound:
            return _render("wall_missing.html", 404, park=park, park_name=CENTRE)
        except ServiceUnavailable:
            return _render("wall_missing.html", 503, {"Retry-After": "5"}, park=park, park_name=CENTRE,
                           unavailable=True)
    return page


def _park(gateway, park):
    config = gateway.needs.call("config", park)
    return config.get("name") or park, ZoneInfo(config.get("timezone") or "Asia/Shanghai")


def following_of(request):
    ids = request.cookies.get(FOLLOWING_COOKIE, "").split(",")
    return [i for i in ids if _NEED_ID.match(i)][:MAX_FOLLOWING]


@_guarded
def page(gateway, request, park):
    status = request.args.get("status") or None
    if status is not None and status not in STATUS_LABELS:
        raise NotFound("unknown status")
    name, zone = _park(gateway, park)
    try:
        wall = gateway.needs.call("wall", park, status=status, before=request.args.get("before") or None, limit=20)
    except BadInput:
        wall = {"entries": [], "next_before": None}
    following = []
    for need_id in following_of(request)[:10]:
        try:
            following.append(gateway.needs.call("wall_entry", park, need_id))
        except NotFound:
            continue
    older = "?" + urlencode({k: v for k, v in (("status", status), ("before", wall["next_before"])) if v}) \
        if wall["next_before"] else None
    return _render("wall.html", park=park, park_name=name, entries=wall["entries"], following=following,
                   status=status, filters=[(code, STATUS_LABELS[code]) for code in FILTERS], older=older,
                   local=_local(zone), overdue=sum(1 for e in wall["entries"] if e["overdue"]))


@_guarded
def entry_page(gateway, request, park, need_id):
    name, zone = _park(gateway, park)
    entry = gateway.needs.call("wall_entry", park, need_id)
    return _render("wall_entry.html", park=park, park_name=name, e=entry, local=_local(zone), labels=STATUS_LABELS,
                   following=need_id in following_of(request), followed=request.args.get("followed"))


@_guarded
def follow_form(gateway, request, park, need_id):
    follower = request.cookies.get(FOLLOWER_COOKIE, "")
    if not _FOLLOWER.match(follower):
        follower = "web-" + secrets.token_hex(8)
    following = request.form.get("action") != "unfollow"
    gateway.needs.call("follow", park, need_id, {"follower_id": follower}, following=following)
    ids = [i for i in following_of(request) if i != need_id]
    if following:
        ids = [need_id] + ids
    response = Response(status=303, headers={
        "Location": "/parks/{}/wall/{}?followed={}".format(park, need_id, "1" if following else "0")})
    for cookie, value in ((FOLLOWER_COOKIE, follower), (FOLLOWING_COOKIE, ",".join(ids[:MAX_FOLLOWING]))):
        response.set_cookie(cookie, value, max_age=COOKIE_AGE_S, path="/parks/{}/".format(park),
                            httponly=True, samesite="Lax")
    return response

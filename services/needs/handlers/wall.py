"""The public echo wall: its lines projected from wall.entry_changed, its
pages, one public need, and the workers who follow one."""
from collections import defaultdict
from datetime import datetime, timezone

from eventlet.semaphore import Semaphore

from lamplight.clock import utcnow
from lamplight.errors import BadInput, NotFound, time_or_reject
from lamplight.shapes import Doc
from services.needs import domain
from services.needs.handlers import Work, need_of
from services.needs.schemas import NeedFollowedSchema

_followed = NeedFollowedSchema()
# one merge of a park's head at a time in this process: concurrent workers
# would only lose the head's compare-and-set to each other and retry
_HEAD_LOCKS: defaultdict[str, Semaphore] = defaultdict(Semaphore)
# park -> its head as this process last wrote it: the next merge writes without reading it
# first, unless another process moved it since (its compare-and-set fails, and it reads)
_HEADS: dict[str, Doc] = {}


def project(work: Work, entry: Doc) -> None:
    """Project the public line; versions make any order of delivery end in the newest line."""
    if work.store.project_wall(entry):
        park_id = work.store.park_id
        with _HEAD_LOCKS[park_id]:
            head = None
            try:
                head = work.store.merge_wall_head(entry, _HEADS.get(park_id))
            finally:
                if head is None:
                    _HEADS.pop(park_id, None)
                else:
                    _HEADS[park_id] = head


def page(work: Work, taxonomy: domain.Taxonomy, status: str | None, category: str | None, before: str | None,
         limit: int) -> Doc:
    """The public echo wall of a park, newest change first. The first page
    without filters is the park's head document and the lines it names;
    another page, or a head that changed while it was read, is a query of the wall."""
    store = work.store
    if status is not None and status not in domain.STATUSES:
        raise BadInput("unknown status {}".format(status), {"status": ["one of: " + ", ".join(domain.STATUSES)]})
    if category is not None:
        taxonomy.category(category)
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise BadInput("limit is 1-100", {"limit": [str(limit)]})
    after_need, changed_before = None, None
    if before is not None:
        # a page's next_before is "<time>~<need id>": lines changed at the same
        # millisecond (a liaison meeting's batch) are told apart by id, so
        # paging never skips one; a bare time is accepted too
        when, _, after_need_id = str(before).partition("~")
        changed_before = time_or_reject(when, "before")
        after_need = after_need_id or None
    head = store.wall_head() if status is None and category is None and before is None else None
    lines = None
    if head is not None and (len(head["lines"]) >= limit or head["complete"]):
        lines = store.head_lines(head["lines"][:limit])
    if lines is None:
        lines = store.wall_page(status, category, changed_before, limit, after_need)
    now = utcnow()
    last = lines[-1] if len(lines) == limit else None
    return {"park_id": store.park_id, "entries": [domain.wall_view(line, now, taxonomy) for line in lines],
            "next_before": _cursor(last) if last else None}


def entry(work: Work, taxonomy: domain.Taxonomy, need_id: str) -> Doc:
    line = work.store.wall_line(need_id)
    if line is None or not line["public"]:
        raise NotFound("no public need {} on the wall of {}".format(need_id, work.store.park_id),
                       {"need_id": ["unknown"]})
    view: Doc = domain.wall_view(line, utcnow(), taxonomy)
    return view


def follow(work: Work, need_id: str, follower_id: str, following: bool) -> Doc:
    """A worker follows (or stops following) a public need to get its updates."""
    store, park_id = work.store, work.store.park_id
    if not need_of(store, need_id)["public"]:
        raise NotFound("no public need {} on the wall of {}".format(need_id, park_id), {"need_id": ["unknown"]})
    envelope = work.events.new("need.followed", park_id=park_id, subject=need_id, data=_followed.dump(
        {"need_id": need_id, "follower_id": follower_id, "following": following}))
    with work.events.staging([envelope]) as staged:
        changed = staged.written = store.set_following(need_id, follower_id, following, staged.update())
    return {"need_id": need_id, "follower_id": follower_id, "following": following, "changed": changed}


def _cursor(line: Doc) -> str:
    """The next page's ``before``: UTC with a Z and the need id, nothing a URL
    mangles (a "+00:00" pasted into a query string arrives as " 00:00")."""
    at: datetime = line["updated_at"].astimezone(timezone.utc)
    return "{}Z~{}".format(at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3], line["need_id"])

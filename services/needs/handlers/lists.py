"""The three lists (needs by item, resources, service projects) and the statistics."""
from collections.abc import Iterable

from lamplight.clock import utcnow
from lamplight.errors import BadInput
from lamplight.shapes import Doc, shown
from services.needs import domain
from services.needs.handlers import Work


def put_resource(work: Work, taxonomy: domain.Taxonomy, code: str, resource: Doc) -> Doc:
    _check_items(taxonomy, resource["items"])
    return shown(work.store.put_listing("resources", code, resource))


def put_project(work: Work, taxonomy: domain.Taxonomy, code: str, project: Doc) -> Doc:
    _check_items(taxonomy, project["items"])
    known = {r["code"] for r in work.store.listings("resources")}
    missing = [r for r in project["resources"] if r not in known]
    if missing:
        raise BadInput("unknown resources: " + ", ".join(missing), {"resources": [
            "unknown; this park's resources are: " + (", ".join(sorted(known)) or "none yet")]})
    return shown(work.store.put_listing("projects", code, project))


def lists(work: Work, taxonomy: domain.Taxonomy) -> Doc:
    """The three lists of a park: needs by item, resources, service projects."""
    store = work.store
    three: Doc = domain.three_lists(taxonomy.config, store.needs_by_item(),
                                    [shown(r) for r in store.listings("resources")],
                                    [shown(p) for p in store.listings("projects")])
    return three


def statistics(work: Work, taxonomy: domain.Taxonomy) -> Doc:
    stats: Doc = domain.statistics(work.store.statistics_rows(), utcnow(), taxonomy.config)
    return dict(stats, park_id=work.store.park_id)


def _check_items(taxonomy: domain.Taxonomy, items: Iterable[str]) -> None:
    missing = [i for i in items if i not in taxonomy.items]
    if missing:
        raise BadInput("unknown items: " + ", ".join(missing), {"items": [
            "unknown; this park's items are: " + ", ".join(sorted(taxonomy.items))]})

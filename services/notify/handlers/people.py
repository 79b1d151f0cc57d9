"""Recipients, templates and previews."""
from datetime import datetime
from typing import Any

from marshmallow import ValidationError

from lamplight.errors import BadInput, NotFound
from lamplight.shapes import Config, Doc
from services.notify import domain
from services.notify.handlers import Work
from services.notify.schemas import SECRET_KEYS, RecipientImportSchema
from services.notify.store import PROFILE_FIELDS

_import = RecipientImportSchema()


def config_view(config: Config) -> Config:
    """The park's configuration as it is read back: credentials are written, never read."""
    for channel in config.get("channels", {}).values():
        for key in SECRET_KEYS:
            if channel.get(key):
                channel[key] = "********"
    return config


def recipient_view(recipient_id: str, profile: Doc) -> Doc:
    view = {k: profile.get(k) for k in PROFILE_FIELDS}
    view["addresses"] = {k: _mask(v) for k, v in (profile.get("addresses") or {}).items() if v}
    view["id"] = recipient_id
    return view


def recipient(work: Work, recipient_id: str) -> Doc:
    profile = work.store.recipient(recipient_id)
    if profile is None:
        raise NotFound("no recipient {} in park {}".format(recipient_id, work.park_id))
    return recipient_view(recipient_id, profile)


def import_recipients(work: Work, rows: list[Any], at: datetime) -> Doc:
    """Many profiles at once (an HR roster, a dormitory list): new ones are
    added, ones already there are left as they are and listed. Every row is
    checked before any is written."""
    docs, problems = [], {}
    for i, row in enumerate(rows):
        try:
            data = _import.load(row)
        except ValidationError as exc:  # collect every row's problems
            problems[str(i)] = exc.messages
            continue
        docs.append(dict(data, _id=data.pop("id"), updated_at=at))
    if problems:
        raise BadInput("{} of {} recipients are not valid".format(len(problems), len(rows)), {"recipients": problems})
    if len({d["_id"] for d in docs}) != len(docs):
        raise BadInput("a recipient id is listed twice", {"recipients": ["duplicate ids"]})
    existing = work.store.import_recipients(docs)
    return {"park_id": work.park_id, "added": len(docs) - len(existing), "existing": existing[:100],
            "existing_count": len(existing)}


def put_template(work: Work, key: str, locale: str, template: Doc, at: datetime) -> Doc:
    """A park's own template for one kind of notice and locale, refused now if
    it would not render (an unknown variable, a syntax error, an attribute the
    sandbox forbids), rather than when a notice is sent."""
    if locale not in domain.LOCALES:
        raise BadInput("no locale {}".format(locale), {"locale": ["one of " + ", ".join(domain.LOCALES)]})
    title, body = domain.check_template(key, template["title"], template["body"])
    work.store.put_template(key, locale, template["title"], template["body"], at)
    return {"key": key, "locale": locale, "preview": {"title": title, "body": body}}


def delete_template(work: Work, key: str, locale: str) -> Doc:
    if not work.store.delete_template(key, locale):
        raise NotFound("park {} has no template of its own for {} ({})".format(work.park_id, key, locale))
    return {"key": key, "locale": locale, "deleted": True}


def templates(work: Work) -> Doc:
    overrides = work.store.overrides()
    out = []
    for key in domain.TEMPLATE_KEYS:
        for locale in domain.LOCALES:
            title, body = domain.template_for(key, locale, overrides)
            out.append({"key": key, "locale": locale, "title": title, "body": body,
                        "own": (key, locale) in overrides})
    return {"park_id": work.park_id, "templates": out}


def preview(work: Work, asked: Doc) -> Doc:
    """Render a template (the park's, the default, or the one given) with the
    kind's example data or the data given."""
    title, body = domain.template_for(asked["key"], asked["locale"], work.store.overrides())
    tz = domain.zone(work.config()["timezone"])
    title, body = domain.render(asked["title"] or title, asked["body"] or body,
                                asked["data"] if asked["data"] is not None else domain.EXAMPLES[asked["key"]], tz)
    return {"title": title, "body": body}


def _mask(value: str | None) -> str | None:
    if not value:
        return value
    if "@" in value:
        name, _, host = value.partition("@")
        return name[:1] + "***@" + host
    return value[:3] + "****" + value[-2:] if len(value) > 6 else "****"

"""The notify service layer: a function a command and an event.

- ``people``: recipients' profiles, the park's templates and previews;
- ``fanout``: an event or a broadcast becomes the notices of the people it
  concerns, planned per channel, quiet hours and digest, and written with
  their delivery log;
- ``sending``: the send loop of one park — what is due, within the park's
  per-channel rate limits, batched where the provider takes many numbers,
  retried with backoff, falling back to the next channel, digested.

A handler gets a :class:`Work` — the park's repository (``NotifyStore``), the
worker's ``Events`` (lamplight.publishing), a logger and the channel adapters.
It holds no nameko and no broker: the nameko class (service.py) decodes a
call, makes the Work, calls the handler and encodes its answer.
"""
import copy
from dataclasses import dataclass
from datetime import tzinfo
from functools import cache
from typing import Any

from lamplight.shapes import Config, Doc, Envelope
from services.notify import domain
from services.notify.metrics import NOTICES
from services.notify.schemas import NoticeSentSchema, NotifyConfigSchema

_config = NotifyConfigSchema()
_notice_event = NoticeSentSchema()


@cache
def _defaults() -> Config:
    """A park's notify configuration before it saves one, loaded once (through
    the schema for every notice, it was 7 % of notify's busy time under ./dev bench)."""
    defaults: Config = _config.load({"version": 1})
    return defaults


@dataclass(frozen=True)
class Work:
    """What one handler call works with: the park's repository, the worker's
    Events, a logger and the channel adapters (services.notify.channels)."""

    store: Any
    events: Any
    log: Any
    channels: Any = None

    @property
    def park_id(self) -> str:
        park_id: str = self.store.park_id
        return park_id

    def config(self) -> Config:
        """The park's notify configuration as this process has it cached, or
        the defaults for a park that has none yet."""
        config = self.store.config.cached()
        if config:
            return dict(config, park_id=self.park_id)
        return dict(copy.deepcopy(_defaults()), park_id=self.park_id, version=0)


def render(work: Work, title: str, body: str, data: Doc, tz: tzinfo, key: str, locale: str) -> tuple[str, str]:
    """A template rendered with an event's data; a saved template this event
    lacks something for falls back to the default, which still tells the
    person what happened."""
    try:
        return domain.render(title, body, data, tz)
    except domain.NotifyRuleError:
        work.log.error("notify.template_failed", key=key, locale=locale)
        title, body = domain.DEFAULT_TEMPLATES[(key, locale if (key, locale) in domain.DEFAULT_TEMPLATES
                                                else "zh-CN")]
        return domain.render(title, body, data, tz)


def notice_event(work: Work, event_type: str, notice: Doc, reason: str | None = None) -> Envelope:
    envelope: Envelope = work.events.new(event_type, park_id=work.park_id, subject=notice["_id"],
                                         data=_notice_event.dump(dict(notice, notice_id=notice["_id"],
                                                                      source_event_id=notice["source_id"],
                                                                      reason=reason)))
    return envelope


def count(park_id: str, records: list[Doc]) -> None:
    """The notices metric, from the delivery log's lines just written."""
    counts: dict[tuple[str, str], int] = {}
    for line in records:
        counts[(line["channel"], line["status"])] = counts.get((line["channel"], line["status"]), 0) + 1
    for (channel, status), n in counts.items():
        NOTICES.labels(park_id, channel, status).inc(n)

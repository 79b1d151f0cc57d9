"""The shapes the kernel and the domains pass around, named for type hints.

A document is what pymongo reads and writes, an envelope a CloudEvents event
as a dict, a config a park's configuration: all plain dicts, typed as such.
"""
from typing import Any

Doc = dict[str, Any]
Envelope = dict[str, Any]
Config = dict[str, Any]


def shown(doc: Doc) -> Doc:
    """A stored document as an answer shows it: without its ``_id`` and
    ``park_id``, its times as ISO 8601."""
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in doc.items()
            if k not in ("_id", "park_id")}

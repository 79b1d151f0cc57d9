"""The shapes the kernel and the domains pass around, named for type hints.

A document is what pymongo reads and writes, an envelope a CloudEvents event
as a dict, a config a park's configuration: all plain dicts, typed as such.
"""
from typing import Any

Doc = dict[str, Any]
Envelope = dict[str, Any]
Config = dict[str, Any]

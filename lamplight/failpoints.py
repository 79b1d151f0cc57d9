"""Named failpoints for fault tests, in the manner of etcd's gofail.

``LAMPLIGHT_FAILPOINTS="outbox.after_write=kill"`` makes the process SIGKILL
itself the first time it reaches that point; ``=raise`` raises there, and
``=sleep:0.5`` waits there half a second every time (a slow dependency). Unset (always, in production) a
failpoint costs one dict lookup.
"""
import os
import signal
import time

_ACTIONS: dict[str, str] = {}


def _load() -> None:
    spec = os.environ.get("LAMPLIGHT_FAILPOINTS", "")
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        _ACTIONS[name] = action or "kill"


_load()


def hit(name: str) -> None:
    action = _ACTIONS.get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise RuntimeError("failpoint {} reached".format(name))
    elif action and action.startswith("sleep:"):
        time.sleep(float(action[len("sleep:"):]))  # green under eventlet

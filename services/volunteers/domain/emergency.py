"""Emergency mode (平战转换) and call-outs: pure rules, no I/O.

A park is in normal or emergency mode; switching to the mode it is in changes
nothing. A call-out reaches everyone on duty now and every volunteer of the
emergency squad; each person is called once, the squad reason winning.
"""
from collections.abc import Iterable
from datetime import datetime

from lamplight.shapes import Doc

NORMAL, EMERGENCY = "normal", "emergency"
MODES = (NORMAL, EMERGENCY)


def switched(state: Doc, mode: str, reason: str, actor: str, at: datetime) -> Doc | None:
    """The park's state after switching to ``mode``, or None when it is in that mode already."""
    if state["mode"] == mode:
        return None
    return dict(state, mode=mode, reason=reason, actor=actor, since=at, version=state["version"] + 1)


def event_type(mode: str) -> str:
    return "emergency.declared" if mode == EMERGENCY else "emergency.ended"


def callout_reasons(on_duty: Iterable[Doc], squad: Iterable[Doc]) -> dict[str, str]:
    """responder id -> why they are called: "squad" (a volunteer of the
    emergency squad) or "on_duty"; in the order of their ids."""
    why = {r["_id"]: "on_duty" for r in on_duty}
    why.update({r["_id"]: "squad" for r in squad if r["kind"] == "volunteer"})
    return dict(sorted(why.items()))


def view(state: Doc, changed: bool | None = None) -> Doc:
    """The park's mode as the API shows it."""
    shown = {"mode": state["mode"], "reason": state.get("reason"), "actor": state.get("actor"),
             "since": state["since"].isoformat() if state.get("since") else None, "version": state["version"]}
    if changed is not None:
        shown["changed"] = changed
    return shown

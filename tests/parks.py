"""Park configuration for tests: the demo park's needs configuration from
parks/demo.yaml, optionally with time limits short enough to watch pass."""
import copy

from lamplight_tools import parks

DEMO = parks.load()


def needs_config(park="quanlinan", version=1, **overrides):
    config = copy.deepcopy(parks.needs_config(DEMO["quanlinan"], version))
    config.update(overrides)
    return config


def fast_needs_config(version=1, due_seconds=2.0, ladder_seconds=(0, 2), evaluation_seconds=2.0, **overrides):
    """The demo taxonomy with every grade due in ``due_seconds``, the
    supervision ladder climbing at ``ladder_seconds`` past due, and the
    evaluation window ``evaluation_seconds`` long."""
    config = needs_config(version=version, **overrides)
    for grade in config["grades"]:
        grade["due_minutes"] = due_seconds / 60
    config["escalation"] = [{"level": level, "after_minutes": s / 60}
                            for level, s in zip(("supervisor", "park_admin"), ladder_seconds)]
    config["evaluation_days"] = evaluation_seconds / 86400
    return config


def volunteers_config(version=1, **dispatch):
    """The demo park's teams, skills, zones and rules; ``dispatch`` overrides
    offer settings (say offer_minutes=0.02 for offers that expire in 1.2 s)."""
    config = copy.deepcopy(parks.volunteers_config(DEMO["quanlinan"], version))
    config["dispatch"].update(dispatch)
    return config


# on duty around the clock: seven 24-hour shifts, each overnight into the next day
ALL_WEEK = {"shifts": [{"day": d, "start": "00:00", "end": "00:00", "overnight": True}
                       for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]}

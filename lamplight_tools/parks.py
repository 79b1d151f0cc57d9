"""Park configuration files: the demo parks ship as ``parks/demo.yaml``."""
from pathlib import Path

import yaml

DEMO_PARKS = Path(__file__).resolve().parents[1] / "parks" / "demo.yaml"


def load(path=DEMO_PARKS):
    """{park id: its configuration} from a parks file."""
    with open(path, encoding="utf-8") as handle:
        doc = yaml.safe_load(handle)
    if not isinstance(doc, dict) or not isinstance(doc.get("parks"), dict):
        raise ValueError("{}: expected a mapping 'parks: {{<park>: …}}'".format(path))
    return doc["parks"]


def needs_config(park, version):
    """The body of PUT …/needs/config for a park of a parks file."""
    return dict(park["needs"], version=version, name=park.get("name"))


def notify_config(park, version):
    """The body of PUT …/notify/config for a park of a parks file."""
    return dict(park.get("notify") or {}, version=version)


def volunteers_config(park, version):
    """The body of PUT …/volunteers/config for a park of a parks file."""
    return dict(park["volunteers"], version=version)

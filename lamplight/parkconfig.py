"""A park's configuration of one service: data, versioned, every version kept.

A change names the version it makes (the current version + 1), so two
administrators editing at once cannot silently overwrite each other: the
second gets 409 and reads again. The same content sent again changes nothing.
"""
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import ValidationError

from lamplight.errors import Conflict, NotFound
from lamplight.storage import VersionedDocument, utcnow

IGNORED = ("_id", "park_id", "saved_at", "version")


class ParkConfig:
    """``scope`` is a park scope of the service's store; ``what`` names the
    configuration in messages ("the notify configuration")."""

    def __init__(self, scope, what):
        self.park_id = scope.park_id
        self.what = what
        self.configs = scope["configs"]
        self.versions = VersionedDocument(self.configs, scope["config_versions"])
        self.doc_id = "{}/config".format(self.park_id)

    def current(self):
        return self.configs.find_one({"_id": self.doc_id})

    def require(self):
        config = self.current()
        if config is None:
            raise NotFound("unknown park {}: it has no {}".format(self.park_id, self.what), {"park": ["unknown"]})
        return config

    def install(self, config):
        """Install ``config`` (loaded, with its ``version``); returns
        (version now current, unchanged)."""
        current = self.current()
        current_version = current["version"] if current else 0
        if config["version"] != current_version + 1:
            raise Conflict("park {} is at {} version {}; send version {}".format(
                self.park_id, self.what, current_version, current_version + 1),
                {"version": ["expected {}".format(current_version + 1)]})
        if current and same(current, config):
            return current_version, True
        fields = dict({k: v for k, v in config.items() if k != "version"}, saved_at=utcnow())
        if not self.versions.write({"_id": self.doc_id, "version": current_version}, fields):
            raise Conflict("another change of {} of {} came first".format(self.what, self.park_id),
                           {"version": ["changed concurrently"]})
        return current_version + 1, False


def time_zone(value):
    """marshmallow validator of a configuration's ``timezone``: an IANA name."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("unknown time zone {!r} (an IANA name such as Asia/Shanghai)".format(value))


def same(current, config):
    return ({k: v for k, v in current.items() if k not in IGNORED}
            == {k: v for k, v in config.items() if k not in IGNORED})


def plain(config):
    """A stored configuration as its owner sent it (with its version)."""
    return {k: v for k, v in config.items() if k not in ("_id", "park_id", "saved_at") and not k.startswith("_")}

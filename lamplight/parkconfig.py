"""A park's configuration of one service: data, versioned, every version kept.

A change names the version it makes (the current version + 1), so two
administrators editing at once cannot silently overwrite each other: the
second gets 409 and reads again. The same content sent again changes nothing.
"""
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import ValidationError

from lamplight.errors import Conflict, NotFound
from lamplight.storage import VersionedDocument, utcnow

# not content: two versions that differ only in these are the same configuration
IGNORED = ("_id", "park_id", "saved_at", "saved_by", "version", "park_version")


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

    def install(self, config, extra=None):
        """Install ``config`` (loaded, with its ``version``); returns
        (version now current, unchanged). ``extra`` fields are written with a
        change but are not part of the configuration (an outbox, who saved it)."""
        return self.install_over(self.current(), config, extra)

    def install_over(self, current, config, extra=None):
        """:meth:`install` over ``current``, the document as the caller has just read it."""
        current_version = current["version"] if current else 0
        if config["version"] != current_version + 1:
            raise Conflict("park {} is at {} version {}; send version {}".format(
                self.park_id, self.what, current_version, current_version + 1),
                {"version": ["expected {}".format(current_version + 1)]})
        if current and same(current, config):
            return current_version, True
        fields = dict({k: v for k, v in config.items() if k != "version"}, saved_at=utcnow(), **(extra or {}))
        if not self.versions.write({"_id": self.doc_id, "version": current_version}, fields):
            raise Conflict("another change of {} of {} came first".format(self.what, self.park_id),
                           {"version": ["changed concurrently"]})
        return current_version + 1, False

    def project(self, section, park_version, load):
        """Install a park's section from ``park.configured`` of ``park_version``
        (``load`` validates it with its version): a version already projected,
        or an older one arriving late, changes nothing. Returns (version, unchanged)."""
        current = self.current()
        if current is not None and current.get("park_version", 0) >= park_version:
            return current["version"], True
        config = load(dict(section, version=(current["version"] if current else 0) + 1))
        version, unchanged = self.install_over(current, config, {"park_version": park_version})
        if unchanged:  # still: an older park version arriving late must not be installed
            self.configs.update_one({"_id": self.doc_id}, {"$max": {"park_version": park_version}})
        return version, unchanged


def time_zone(value):
    """marshmallow validator of a configuration's ``timezone``: an IANA name."""
    try:
        if not isinstance(value, str) or not 1 <= len(value) <= 64:
            raise ValueError(value)  # the longest IANA name has 32 characters
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name the file system refuses
        raise ValidationError("unknown time zone {!r} (an IANA name such as Asia/Shanghai)".format(value))


def same(current, config):
    def content(doc):
        return {k: v for k, v in doc.items() if k not in IGNORED and not k.startswith("_")}
    return content(current) == content(config)


def plain(config):
    """A stored configuration as its owner sent it (with its version)."""
    return {k: v for k, v in config.items()
            if k not in ("_id", "park_id", "saved_at", "saved_by") and not k.startswith("_")}


def editable(payload):
    """A configuration sent back as it was read: ``park_version`` (the park
    configuration it was installed from) is the platform's, not the sender's."""
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k != "park_version"}
    return payload

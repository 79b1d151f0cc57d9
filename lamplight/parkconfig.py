"""A park's configuration of one service: data, versioned, every version kept.

A change names the version it makes (the current version + 1), so two
administrators editing at once cannot silently overwrite each other: the
second gets 409 and reads again. The same content sent again changes nothing.
"""
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kombu import Connection, Exchange, Producer, Queue
from marshmallow import ValidationError
from nameko.extensions import DependencyProvider
from pymongo import ReturnDocument

from lamplight import logs, settings
from lamplight.errors import Conflict, NotFound
from lamplight.shapes import Config, Doc
from lamplight.storage import VersionedDocument, utcnow

# not content: two versions that differ only in these are the same configuration
Key = tuple[str, str]  # (database, park id)
Stamp = tuple[int, int]  # (version, park version)

IGNORED = ("_id", "park_id", "saved_at", "saved_by", "version", "park_version")


class ConfigCache:
    """The park configurations a process has read, so that a message does
    not read its park's configuration again (it was read for every message:
    1,036 reads of ``configs`` for ~150 needs).

    Never stale past a change: every install announces its version on the
    broker to every process of the service (:class:`ConfigWatch`), and an
    entry older than a version announced for its park is read again — also
    when the announcement arrives before the installing write is visible
    here (then the park is read each time until it is). ``CONFIG_CACHE_S``
    bounds an entry's life in case an announcement was lost (the broker was
    away at that moment). Entries are copies: callers may change what they get."""

    def __init__(self) -> None:
        self._entries: dict[Key, tuple[Config | None, float]] = {}  # key -> (config, read at)
        self._announced: dict[Key, Stamp] = {}  # key -> newest stamp announced: (version, park_version)

    @staticmethod
    def key(configs: Any, park_id: str) -> Key:
        return (configs.database_name, park_id)

    def get(self, key: Key, read: Callable[[], Any]) -> Any:
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and now - entry[1] < settings.get_float("CONFIG_CACHE_S") and \
                stamp(entry[0]) >= self._announced.get(key, (0, 0)):
            return _copy(entry[0])
        config = read()
        # a park without one is remembered too (notify's defaults): its first install is announced
        if stamp(config) >= self._announced.get(key, (0, 0)):
            self._entries[key] = (config, now)
        else:
            self._entries.pop(key, None)
        return _copy(config)

    def announce(self, key: Key, announced: Sequence[int]) -> None:
        """A configuration of ``key`` reached ``announced`` = (version, park_version)."""
        new: Stamp = (int(announced[0]), int(announced[1]))
        if new > self._announced.get(key, (0, 0)):
            self._announced[key] = new
        entry = self._entries.get(key)
        if entry is not None and stamp(entry[0]) < new:
            del self._entries[key]

    def announced(self, key: Key) -> Stamp:
        """The newest stamp announced for ``key``, (0, 0) if none."""
        return self._announced.get(key, (0, 0))

    def clear(self) -> None:
        self._entries.clear()
        self._announced.clear()
        CachedRecords.clear()


def stamp(config: Config | None) -> Stamp:
    """What orders the states of a configuration: its version, then the park
    version it was installed from (recorded even when the content is unchanged)."""
    if config is None:  # none installed yet
        return (0, 0)
    return (config["version"], config.get("park_version") or 0)


def _copy(config: Any) -> Any:
    # configurations are small trees of dicts, lists and scalars
    if isinstance(config, dict):
        return {k: _copy(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_copy(v) for v in config]
    return config


CACHE = ConfigCache()
CONFIG_EXCHANGE = Exchange("lamplight.configs", "topic", durable=True)


class ConfigWatch(DependencyProvider):
    """Keeps this process's :data:`CACHE` true: consumes the announcements
    of every install of this service's park configurations (an exclusive
    queue per process on ``lamplight.configs``), and announces this
    process's own installs."""

    def setup(self) -> None:
        self.service = self.container.service_name
        self.log = logs.get_logger(component="config-watch")
        self.uri = settings.get("AMQP_URI")
        self.running = True
        _WATCHES[self.service] = self

    def start(self) -> None:
        self.thread = self.container.spawn_managed_thread(self._consume, identifier="config-watch")

    def stop(self) -> None:
        self.running = False
        _WATCHES.pop(self.service, None)
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.kill()

    kill = stop

    def _consume(self) -> None:
        queue = Queue(exchange=CONFIG_EXCHANGE, routing_key="{}.#".format(self.service), exclusive=True,
                      auto_delete=True, durable=False)
        while self.running:
            try:
                with Connection(self.uri, connect_timeout=5, heartbeat=30) as conn:
                    CACHE.clear()  # anything may have changed while we were not listening
                    with conn.Consumer(queue, callbacks=[self._on_message], accept=["json"], no_ack=True):
                        while self.running:
                            try:
                                conn.drain_events(timeout=1)
                            except TimeoutError:
                                conn.heartbeat_check()
            except Exception as exc:  # the broker is away: entries still expire by CONFIG_CACHE_S
                self.log.warning("config_watch.reconnecting", error="{}: {}".format(type(exc).__name__, exc))
                time.sleep(1)

    def _on_message(self, body: dict[str, Any], message: Any) -> None:
        CACHE.announce((body["database"], body["park_id"]), (int(body["version"]), int(body["park_version"])))

    def announce(self, key: Key, announced: Stamp) -> None:
        try:
            with Connection(self.uri, connect_timeout=5) as conn:
                Producer(conn).publish(
                    {"database": key[0], "park_id": key[1], "version": announced[0], "park_version": announced[1]},
                    exchange=CONFIG_EXCHANGE,
                    routing_key="{}.{}".format(self.service, key[1]), serializer="json", declare=[CONFIG_EXCHANGE],
                    retry=True, retry_policy={"max_retries": 2})
        except Exception as exc:  # other processes see it within CONFIG_CACHE_S
            self.log.warning("config_watch.announce_failed", park_id=key[1], error=str(exc))


_WATCHES: dict[str, ConfigWatch] = {}


def _announce(key: Key, announced: Stamp) -> None:
    CACHE.announce(key, announced)
    for watch in list(_WATCHES.values()):
        watch.announce(key, announced)


class _Counted:
    """What a cached projection of a park shares: ``collection`` (a park
    scope's) holds its documents and one counter document (``_id``
    :attr:`COUNTER`) that every change increments after writing, and the
    writer announces the counter's new value on ``lamplight.configs``. A
    reader reads the counter before the documents, so nothing it keeps is
    older than the counter says, and an announced newer value drops it."""

    COUNTER = "~version"

    def __init__(self, collection: Any, park_id: str, name: str) -> None:
        self.collection = collection
        self.key = (collection.database_name + "#" + name, park_id)

    def _stamp(self) -> Stamp:
        counter = self.collection.find_one({"_id": self.COUNTER}) or {}
        return (counter.get("version", 0), 0)

    def changed(self) -> None:
        """Call after each change of the projection's documents."""
        counter = self.collection.find_one_and_update({"_id": self.COUNTER}, {"$inc": {"version": 1}},
                                                      upsert=True, return_document=ReturnDocument.AFTER)
        _announce(self.key, (counter["version"], 0))


class CachedProjection(_Counted):
    """A slow-changing projection of a park read whole (a park's own
    templates) and kept in :data:`CACHE` beside the configurations, with
    their guarantee: a change is seen at once by every process of the service."""

    def __init__(self, collection: Any, park_id: str, name: str, read: Callable[[], Any]) -> None:
        super().__init__(collection, park_id, name)
        self._read = read

    def get(self) -> Any:
        return CACHE.get(self.key, self._load)["value"]

    def _load(self) -> dict[str, Any]:
        version, park_version = self._stamp()
        return {"version": version, "park_version": park_version, "value": self._read()}


class CachedRecords(_Counted):
    """Documents of a park read by ``_id`` and kept in the process one by
    one (a recipient's profile for each notice). A process's records of a
    park are dropped when a newer counter is announced (or after
    ``CONFIG_CACHE_S``). At most ``limit`` records are kept per park; past
    that they are dropped."""

    # key -> {"stamp": (version, 0), "at": monotonic read time, "docs": {id: doc or None}}
    _parks: dict[Key, dict[str, Any]] = {}

    def __init__(self, collection: Any, park_id: str, name: str, limit: int = 50000) -> None:
        super().__init__(collection, park_id, name)
        self.limit = limit

    def get_many(self, ids: Iterable[Any], read_many: Callable[[list[Any]], Iterable[Doc]]) -> dict[Any, Doc | None]:
        """{id: the document, or None where there is none}; ``read_many(ids)``
        reads those this process does not hold (one request). The documents
        are the cache's own: callers copy what they change."""
        park = self._current()
        docs = park["docs"]
        result = {i: docs[i] for i in ids if i in docs}
        missing = [i for i in dict.fromkeys(ids) if i not in docs]
        if missing:
            found = {doc["_id"]: doc for doc in read_many(missing)}
            fresh = {i: found.get(i) for i in missing}
            if CACHE.announced(self.key) <= park["stamp"]:  # nothing announced since the counter was read
                if len(docs) + len(fresh) > self.limit:
                    docs.clear()
                docs.update(fresh)
            result.update(fresh)
        return result

    def _current(self) -> dict[str, Any]:
        park = self._parks.get(self.key)
        now = time.monotonic()
        if park is None or now - park["at"] >= settings.get_float("CONFIG_CACHE_S") or \
                CACHE.announced(self.key) > park["stamp"]:
            park = {"stamp": self._stamp(), "at": now, "docs": {}}
            self._parks[self.key] = park
        return park

    @classmethod
    def clear(cls) -> None:
        cls._parks.clear()


class ParkConfig:
    """``scope`` is a park scope of the service's store; ``what`` names the
    configuration in messages ("the notify configuration")."""

    def __init__(self, scope: Any, what: str) -> None:
        self.park_id = scope.park_id
        self.what = what
        self.configs = scope["configs"]
        self.versions = VersionedDocument(self.configs, history=scope["config_versions"])  # every version kept
        self.doc_id = "{}/config".format(self.park_id)
        self.cache_key = ConfigCache.key(self.configs, self.park_id)

    def current(self) -> Config | None:
        """The configuration as stored now (a read: for installs and checks)."""
        return self.configs.find_one({"_id": self.doc_id})

    def cached(self) -> Config | None:
        """The configuration, from this process's cache when it is current."""
        return CACHE.get(self.cache_key, self.current)

    def require(self) -> Config:
        config = self.cached()
        if config is None:
            raise NotFound("unknown park {}: it has no {}".format(self.park_id, self.what), {"park": ["unknown"]})
        return config

    def install(self, config: Config, extra: dict[str, Any] | None = None) -> tuple[int, bool]:
        """Install ``config`` (loaded, with its ``version``); returns
        (version now current, unchanged). ``extra`` fields are written with a
        change but are not part of the configuration (an outbox, who saved it)."""
        return self.install_over(self.current(), config, extra)

    def install_over(self, current: Config | None, config: Config,
                     extra: dict[str, Any] | None = None) -> tuple[int, bool]:
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
        previous: int = (current or {}).get("park_version") or 0
        park_version: int = (extra or {}).get("park_version", previous)
        _announce(self.cache_key, (current_version + 1, park_version))
        return current_version + 1, False

    def project(self, section: dict[str, Any], park_version: int,
                load: Callable[[dict[str, Any]], Config]) -> tuple[int, bool]:
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
            _announce(self.cache_key, (version, park_version))
        return version, unchanged


def time_zone(value: Any) -> None:
    """marshmallow validator of a configuration's ``timezone``: an IANA name."""
    try:
        if not isinstance(value, str) or not 1 <= len(value) <= 64:
            raise ValueError(value)  # the longest IANA name has 32 characters
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name the file system refuses
        raise ValidationError("unknown time zone {!r} (an IANA name such as Asia/Shanghai)".format(value))


def same(current: Config, config: Config) -> bool:
    def content(doc: Config) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k not in IGNORED and not k.startswith("_")}
    return content(current) == content(config)


def plain(config: Config) -> Config:
    """A stored configuration as its owner sent it (with its version)."""
    return {k: v for k, v in config.items()
            if k not in ("_id", "park_id", "saved_at", "saved_by") and not k.startswith("_")}


def editable(payload: Any) -> Any:
    """A configuration sent back as it was read: ``park_version`` (the park
    configuration it was installed from) is the platform's, not the sender's."""
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k != "park_version"}
    return payload

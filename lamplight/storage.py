"""MongoDB for nameko services: park-scoped collections, indexes, group commit.

Store code never holds a raw pymongo collection. Document ids are either
opaque (``need_01…``) or begin with their park (``<park>/…``); the latter are
refused in any other park's scope, so a lookup by such an id needs no
park_id condition. It gets either
``store.park(park_id)["needs"]`` — every filter, document and pipeline gets
that park_id — or ``store["needs"]``, which refuses any query that does not
name exactly one park. Cross-park reads (the outbox relay, gauges) go through
``store.unscoped(name, reason)``, which says so in the log.
"""
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import eventlet
from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider
from pymongo import IndexModel, MongoClient, monitoring
from pymongo.collection import Collection
from pymongo.command_cursor import CommandCursor
from pymongo.cursor import Cursor
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.results import DeleteResult, UpdateResult

from lamplight import logs, settings
from lamplight.clock import utcnow  # noqa: F401 (re-exported: the stores' clock)
from lamplight.errors import BadInput, UnscopedQuery
from lamplight.metrics import DB_REQUESTS, DB_SCANS
from lamplight.shapes import Doc

PARK_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# Collections and indexes the kernel itself keeps in every service database.
# They are platform-wide bookkeeping, not park data, so they are the one
# exception to "every index starts with park_id".
KERNEL_COLLECTIONS = frozenset({"_writers", "_alarms"})
INDEX_NOT_FOUND = 27  # the server's code for dropping an index that is not there


class RequestCounter(monitoring.CommandListener):
    """Counts every command a process sends to the database
    (lamplight_db_requests_total): what the benchmarks divide by the work done.

    With ``shapes`` (a queue), each new shape of filter — the collection and
    the filter's fields and operators, not its values — is put there once, for
    :class:`ScanFinder` to check."""

    _SKIP = frozenset({"hello", "ismaster", "isMaster", "ping", "endSessions", "saslStart", "saslContinue"})

    def __init__(self, service: str, shapes: LightQueue | None = None) -> None:
        self.service = service
        self._children: dict[tuple[str, str], Any] = {}
        self._shapes = shapes
        self._seen: set[Any] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in self._SKIP:
            return
        target = event.command.get(name)
        collection = target.split(".", 1)[0] if isinstance(target, str) else "-"
        key = (name, collection)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = DB_REQUESTS.labels(self.service, name, collection)
        child.inc()
        if self._shapes is not None and isinstance(target, str):
            filter_ = _filter_of(name, event.command)
            if filter_ is not None:
                shape = (event.database_name, target, _shape(filter_))
                if shape not in self._seen:
                    self._seen.add(shape)
                    self._shapes.put((event.database_name, target, filter_, shape[2]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _filter_of(command_name: str, command: Any) -> Any:
    """The filter of a command that reads or changes documents, or None."""
    if command_name in ("find", "findAndModify", "count"):
        return command.get("filter", command.get("query")) or {}
    if command_name in ("update", "delete"):
        statements = command.get("updates") or command.get("deletes") or []
        return statements[0].get("q", {}) if statements else None
    return None


def _shape(value: Any) -> Any:
    """A filter's fields and operators, without its values."""
    if isinstance(value, dict):
        return tuple(sorted((k, _shape(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(sorted({_shape(v) for v in value}, key=repr))
    return None


class ScanFinder:
    """For the benchmarks (DB_CHECK_SCANS=1): checks each new shape of
    query a process sends against the collection's declared indexes and
    counts those no index serves beyond their park — nothing but ``park_id``
    (or nothing at all) narrows the read, so the database reads every
    document of the park to answer (lamplight_db_scans_total, and a warning
    naming the shape). An index serves the equalities (and ``$in``) on a
    prefix of its fields and a range after them, as on MongoDB and on the
    patched development server; an equality on ``_id`` is always served.
    A filter that names nothing but the park (a listing) is not counted."""

    RANGES = frozenset({"$lt", "$lte", "$gt", "$gte"})

    def __init__(self, service: str, provider: "Mongo", log: Any) -> None:
        self.service = service
        self.provider = provider  # its indexes, and the kernel's (the outbox relay's), are read when first needed
        self.log = log
        self.shapes = LightQueue()
        self._indexes: dict[str, list[Any]] | None = None

    def _keys(self, collection: str) -> list[Any]:
        if self._indexes is None:
            found: dict[str, list[Any]] = {}
            for declared in (self.provider.indexes, self.provider.kernel_indexes):
                for name, models in declared.items():
                    found.setdefault(name, []).extend(list(m.document["key"]) for m in models)
            self._indexes = found
        return self._indexes.get(collection, [])

    def run(self) -> None:
        while True:
            _, collection, filter_, shape = self.shapes.get()
            logical = collection.split(".", 1)[0]
            if self.scans(logical, filter_):
                DB_SCANS.labels(self.service, logical).inc()
                self.log.warning("store.scan", collection=collection, shape=repr(shape))

    def scans(self, collection: str, filter_: Any) -> bool:
        fields = {k: v for k, v in filter_.items() if not k.startswith("$")}
        if not set(fields) - {"park_id"}:
            return False
        if self._kind(fields.get("_id")) == "eq":
            return False
        best = 0
        for keys in self._keys(collection):
            served = 0
            for key in keys:
                kind = self._kind(fields.get(key))
                if kind is None:
                    break
                served += 1
                if kind == "range":
                    break
            best = max(best, served)
        return best <= 1

    def _kind(self, value: Any) -> str | None:
        """How a filter value narrows an index: "eq", "range" or None."""
        if value is None:
            return None
        if isinstance(value, dict) and value and all(k.startswith("$") for k in value):
            if set(value) == {"$in"} or set(value) == {"$eq"}:
                return "eq"
            if set(value) <= self.RANGES:
                return "range"
            return None
        return "eq"


def check_park_id(park_id: Any) -> str:
    if not isinstance(park_id, str) or not PARK_ID.match(park_id):
        raise BadInput(
            "park_id must be 1-63 lowercase letters, digits or dashes",
            {"park_id": ["invalid park id: {!r}".format(park_id)]},
        )
    return park_id


def _names_one_park(filter_: Any) -> bool:
    return isinstance(filter_, dict) and isinstance(filter_.get("park_id"), str)


class Batcher:
    """A thread that writes, in one request, what concurrent callers queued
    while the last request was out (and for ``wait_s`` after the first).

    Each caller blocks until the batch holding its item is written and gets
    its own outcome back. ``_flush`` writes a batch and answers every caller.
    """

    def __init__(self, collection: Collection, max_batch: int, wait_s: float) -> None:
        self.collection = collection
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.queue = LightQueue()
        self.thread = None

    def submit_one(self, item: Any) -> Event:
        done = Event()
        self.queue.put((item, done))
        return done

    def run(self) -> None:
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self.queue.get(timeout=max(remaining, 0)) if remaining > 0
                                 else self.queue.get_nowait())
                except Empty:
                    break
            self._flush(batch)

    def _flush(self, batch: list[tuple[Any, Event]]) -> None:
        raise NotImplementedError


class GroupCommit(Batcher):
    """Batches concurrent inserts into one insert_many.

    Each caller blocks until the batch holding its document is written and gets
    its own outcome back (a DuplicateKeyError is raised for that caller only).
    """

    def insert(self, doc: Doc) -> Any:
        return self.submit([doc])[0].wait()

    def submit(self, docs: list[Doc]) -> list[Event]:
        """Queue ``docs`` (they go out in the same batch unless it is full);
        an Event per document, sent its _id or its own exception."""
        return [self.submit_one(doc) for doc in docs]

    def _flush(self, batch: list[tuple[Doc, Event]]) -> None:
        docs = [doc for doc, _ in batch]
        try:
            self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            failed = {err["index"]: err for err in exc.details.get("writeErrors", [])}
            for i, (doc, done) in enumerate(batch):
                err = failed.get(i)
                if err is None:
                    done.send(doc["_id"])
                elif err.get("code") == 11000:
                    done.send_exception(DuplicateKeyError(err.get("errmsg", "duplicate key"), 11000, err))
                else:
                    done.send_exception(PyMongoError(err.get("errmsg", "write failed")))
            return
        except Exception as exc:  # the whole batch failed: every caller hears it
            for _, done in batch:
                done.send_exception(exc)
            return
        for doc, done in batch:
            done.send(doc["_id"])


class ParkScopedCollection:
    """A collection seen from inside one park. Every filter names the park,
    in a partition too (which holds that one park's documents only): the
    indexes lead with park_id, and the development server serves a filter
    from an index only when it names the index's leading fields."""

    def __init__(self, collection: Collection, park_id: str, committer: GroupCommit | None = None,
                 name: str | None = None) -> None:
        self._c = collection
        self.database_name = collection.database.name
        self.park_id = park_id
        self._committer = committer
        self.name = name or collection.name

    def _filter(self, filter_: Doc | None) -> Doc:
        filter_ = dict(filter_ or {})
        named = filter_.get("park_id", self.park_id)
        if named != self.park_id:
            raise UnscopedQuery(
                "filter on {} names park {!r} inside the scope of park {!r}".format(
                    self.name, named, self.park_id))
        filter_["park_id"] = self.park_id
        return filter_

    def _own_id(self, value: Any) -> bool:
        return isinstance(value, str) and value.startswith(self.park_id + "/")

    def _doc(self, doc: Doc) -> Doc:
        if doc.get("park_id", self.park_id) != self.park_id:
            raise UnscopedQuery("document for park {!r} written in the scope of park {!r}".format(
                doc.get("park_id"), self.park_id))
        _id = doc.get("_id")
        if isinstance(_id, str) and "/" in _id and not self._own_id(_id):
            raise UnscopedQuery("document id {!r} names another park than {!r}".format(_id, self.park_id))
        doc["park_id"] = self.park_id
        return doc

    def _update(self, update: Any, upsert: bool | None = False) -> Any:
        for op in ("$set", "$setOnInsert", "$unset", "$rename"):
            if "park_id" in (update.get(op) or {}):
                raise UnscopedQuery("an update may not change park_id ({} on {})".format(op, self.name))
        if upsert:  # a document an upsert creates belongs to this park
            update = dict(update, **{"$setOnInsert": dict(update.get("$setOnInsert") or {}, park_id=self.park_id)})
        return update

    def find(self, filter_: Doc | None = None, *args: Any, **kwargs: Any) -> Cursor:
        return self._c.find(self._filter(filter_), *args, **kwargs)

    def find_one(self, filter_: Doc | None = None, *args: Any, **kwargs: Any) -> Doc | None:
        return self._c.find_one(self._filter(filter_), *args, **kwargs)

    def count_documents(self, filter_: Doc | None = None, **kwargs: Any) -> int:
        return self._c.count_documents(self._filter(filter_), **kwargs)

    def insert_one(self, doc: Doc) -> Any:
        """Insert through the group commit when there is one; raises
        DuplicateKeyError when the document (or its unique key) exists."""
        doc = self._doc(doc)
        if self._committer is not None:
            return self._committer.insert(doc)
        return self._c.insert_one(doc).inserted_id

    def insert_once(self, doc: Doc) -> bool:
        """Insert; False when the document (or its unique key) exists — the
        way an idempotent handler skips a duplicate delivery."""
        try:
            self.insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    def insert_or_get(self, doc: Doc) -> tuple[Doc | None, bool]:
        """Insert; when a document with that _id exists, return it instead.
        Returns (document, created)."""
        try:
            self.insert_one(doc)
            return doc, True
        except DuplicateKeyError:
            return self.find_one({"_id": doc["_id"]}), False

    def insert_many(self, docs: list[Doc], ordered: bool = True) -> Any:
        return self._c.insert_many([self._doc(d) for d in docs], ordered=ordered).inserted_ids

    def update_one(self, filter_: Doc, update: Any, **kwargs: Any) -> UpdateResult:
        return self._c.update_one(self._filter(filter_), self._update(update, kwargs.get("upsert")), **kwargs)

    def update_many(self, filter_: Doc, update: Any, **kwargs: Any) -> UpdateResult:
        return self._c.update_many(self._filter(filter_), self._update(update, kwargs.get("upsert")), **kwargs)

    def replace_one(self, filter_: Doc, doc: Doc, upsert: bool = False) -> UpdateResult:
        return self._c.replace_one(self._filter(filter_), self._doc(dict(doc)), upsert=upsert)

    def find_one_and_update(self, filter_: Doc, update: Any, **kwargs: Any) -> Doc | None:
        return self._c.find_one_and_update(self._filter(filter_), self._update(update, kwargs.get("upsert")),
                                           **kwargs)

    def delete_one(self, filter_: Doc) -> DeleteResult:
        return self._c.delete_one(self._filter(filter_))

    def insert_many_once(self, docs: list[Doc]) -> list[Doc]:
        """Insert what is not there yet (by _id or unique key); returns the
        documents inserted. For idempotent bulk work (a call-out, a month's
        visits, a notice's log lines). Through the group commit when there is
        one and ``docs`` would not fill a batch of it alone: concurrent workers'
        documents share one insert, and a bulk write (a broadcast's chunk) is
        its own request, not cut into the committer's batches and queued
        behind them."""
        docs = [self._doc(d) for d in docs]
        if not docs:
            return []
        if self._committer is not None and len(docs) < self._committer.max_batch:
            inserted = []
            for doc, done in zip(docs, self._committer.submit(docs)):
                try:
                    done.wait()
                    inserted.append(doc)
                except DuplicateKeyError:
                    pass
            return inserted
        try:
            self._c.insert_many(docs, ordered=False)
            return docs
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(err.get("code") != 11000 for err in errors):
                raise
            failed = {err["index"] for err in errors}
            return [d for i, d in enumerate(docs) if i not in failed]

    def delete_many(self, filter_: Doc) -> DeleteResult:
        return self._c.delete_many(self._filter(filter_))

    def aggregate(self, pipeline: list[Doc], **kwargs: Any) -> CommandCursor:
        return self._c.aggregate([{"$match": {"park_id": self.park_id}}] + list(pipeline), **kwargs)


class VersionedDocument:
    """Compare-and-set on one document's ``version``: a write names the
    version it read, and of concurrent writers exactly one wins.

    One conditional single-document update, atomic on MongoDB and on the
    development server (ferretdb/patches/0002: stock FerretDB let 2 to 7 of
    20 concurrent conditional updates win, which is why this used to insert a
    claim per version into a second collection first). ``history``, when
    given, receives every version's fields (``<id>@<version>``): an audit
    trail, for documents whose every version is kept on purpose.
    """

    def __init__(self, documents: Any, history: Any = None) -> None:
        self.documents = documents
        self.history = history

    def write(self, doc: Doc, fields: Doc) -> bool:
        """Move ``doc`` (as read, at ``doc["version"]``; 0 for one not yet
        written) to version + 1 with ``fields``. False when another writer
        had that version: read again."""
        version = doc["version"] + 1
        body = dict(fields, version=version)
        if doc["version"] == 0:
            try:
                self.documents.insert_one(dict(body, _id=doc["_id"]))
            except DuplicateKeyError:
                return False
        elif self.documents.update_one({"_id": doc["_id"], "version": doc["version"]},
                                       {"$set": body}).matched_count != 1:
            return False
        self._record(doc["_id"], body)
        return True

    def project(self, doc_id: Any, fields: Doc, attempts: int = 5) -> bool:
        """Set a version that was decided elsewhere (carried by an event),
        whatever the order versions arrive in: the newest one stays. False
        when this version, or a newer one, was set already."""
        version = fields["version"]
        for _ in range(attempts):
            try:
                self.documents.update_one({"_id": doc_id, "version": {"$lt": version}}, {"$set": fields},
                                          upsert=True)
                self._record(doc_id, fields)
                return True
            except DuplicateKeyError:
                # the document exists at this version or newer — or a projection
                # of another version created it just now: look again
                current = self.documents.find_one({"_id": doc_id}, {"version": 1})
                if current is not None and current["version"] >= version:
                    return False
        raise PyMongoError("projection of {} version {} kept racing".format(doc_id, version))

    def _record(self, doc_id: Any, body: Doc) -> None:
        if self.history is not None:
            try:
                self.history.insert_one({"_id": "{}@{}".format(doc_id, body["version"]), "fields": body})
            except DuplicateKeyError:
                pass  # recorded already (a write retried after a lost answer)


class GuardedCollection:
    """A collection reached without a park scope: every call must name exactly
    one park in its filter (or document), otherwise UnscopedQuery."""

    def __init__(self, collection: Collection, scoped_factory: Callable[[str], ParkScopedCollection]) -> None:
        self._c = collection
        self._scoped = scoped_factory
        self.name = collection.name

    def _scope_for(self, what: str, filter_: Any) -> ParkScopedCollection:
        if not _names_one_park(filter_):
            raise UnscopedQuery(
                "{} on {} does not name a park: every query must filter on one park_id "
                "(got {!r})".format(what, self.name, None if not isinstance(filter_, dict)
                                    else filter_.get("park_id")))
        return self._scoped(filter_["park_id"])

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in ("find", "find_one", "count_documents", "update_one", "update_many",
                          "find_one_and_update", "delete_one", "insert_one", "aggregate"):
            raise AttributeError(method)

        def call(first: Any = None, *args: Any, **kwargs: Any) -> Any:
            if method == "aggregate":
                stage = (first or [{}])[0].get("$match") if first else None
                scope = self._scope_for(method, stage)
                return scope.aggregate(first[1:], *args, **kwargs)
            scope = self._scope_for(method, first)
            return getattr(scope, method)(first, *args, **kwargs)

        return call


class ParkScope:
    def __init__(self, store: "Store", park_id: str) -> None:
        self._store = store
        self.park_id = check_park_id(park_id)

    def __getitem__(self, name: str) -> ParkScopedCollection:
        return self._store._scoped(name, self.park_id)


def partition_name(name: str, park_id: str) -> str:
    return "{}.{}".format(name, park_id)


class Store:
    """What a service worker gets from the Mongo provider."""

    def __init__(self, db: Database, committer: Callable[[str, str], GroupCommit | None], log: Any,
                 partitions: "Partitions | None" = None,
                 collections: "dict[str, Collection] | None" = None,
                 batchers: "Callable[[str, Callable[..., Batcher]], Batcher] | None" = None) -> None:
        self.db = db
        self._committer = committer  # (physical, name) -> the GroupCommit of that collection, or None
        self._batchers = batchers  # (collection, kind) -> the process's Batcher of that kind there
        self._log = log
        self._partitions = partitions
        # pymongo builds a Collection with its codec options and concerns on
        # every db[name]; the provider shares one of each for the process
        self._collections = {} if collections is None else collections

    def _collection(self, physical: str) -> Collection:
        collection = self._collections.get(physical)
        if collection is None:
            collection = self._collections[physical] = self.db[physical]
        return collection

    def _scoped(self, name: str, park_id: str) -> ParkScopedCollection:
        if name in KERNEL_COLLECTIONS:
            raise UnscopedQuery("{} is kernel bookkeeping, not park data".format(name))
        check_park_id(park_id)
        if self._partitions is not None and name in self._partitions.names:
            physical = self._partitions.ensure(name, park_id)
            return ParkScopedCollection(self._collection(physical), park_id, self._committer(physical, name),
                                        name=name)
        return ParkScopedCollection(self._collection(name), park_id, self._committer(name, name))

    def park(self, park_id: str) -> ParkScope:
        return ParkScope(self, park_id)

    def __getitem__(self, name: str) -> GuardedCollection:
        return GuardedCollection(self._collection(name), lambda park: self._scoped(name, park))

    def batched(self, name: str, kind: "Callable[..., Batcher]") -> "Batcher | None":
        """The process's batcher of ``kind`` on kernel collection ``name``
        (None for a store without a provider: write directly)."""
        return None if self._batchers is None else self._batchers(name, kind)

    def unscoped(self, name: str, reason: str) -> Collection:
        """A raw collection for a cross-park job; the reason goes to the log."""
        if self._partitions is not None and name in self._partitions.names:
            raise UnscopedQuery("{} is partitioned by park: use partitions()".format(name))
        self._log.debug("store.unscoped_access", collection=name, reason=reason)
        return self.db[name]

    def partitions(self, name: str, reason: str) -> list[tuple[str | None, Collection]]:
        """[(park_id or None, raw collection)] holding ``name``'s documents,
        for a cross-park job: one per park of a partitioned collection, else
        the one collection. The reason goes to the log."""
        self._log.debug("store.unscoped_access", collection=name, reason=reason)
        if self._partitions is None or name not in self._partitions.names:
            return [(None, self.db[name])]
        prefix = name + "."
        return [(physical[len(prefix):], self.db[physical]) for physical in sorted(self.db.list_collection_names())
                if physical.startswith(prefix) and PARK_ID.match(physical[len(prefix):])]


def check_indexes(indexes: dict[str, list[IndexModel]]) -> None:
    """Every index of park data leads with park_id (tenancy, DESIGN.md)."""
    for collection, models in indexes.items():
        for model in models:
            keys = list(model.document["key"].keys())
            if collection not in KERNEL_COLLECTIONS and keys[0] != "park_id":
                raise ValueError("index {} on {} does not start with park_id".format(keys, collection))


class Partitions:
    """Collections kept as one physical collection per park (``tasks.<park>``).

    Why: FerretDB v1 on SQLite answers every query, even one on ``_id``, by
    scanning the whole collection (measured: 1.0 s for an ``_id`` lookup among
    100,000 responders of 20 parks, 9 ms among one park's 5,000). A park's
    dispatch must not slow down because other parks are big. Documents still
    carry park_id and indexes still lead with it, so the same code runs on
    MongoDB unchanged; a partition's indexes are created the first time a
    process uses that park."""

    def __init__(self, db: Database, names: Iterable[str], indexes: dict[str, list[IndexModel]]) -> None:
        self.db = db
        self.names = frozenset(names)
        self.indexes = indexes
        self._ready: set[str] = set()

    def ensure(self, name: str, park_id: str) -> str:
        physical = partition_name(name, park_id)
        if physical not in self._ready:
            models = self.indexes.get(name, [])
            if models:
                existing = set(self.db[physical].index_information())
                for model in models:
                    if model.document["name"] not in existing:
                        self.db[physical].create_indexes([model])
            self._ready.add(physical)
        return physical


class Mongo(DependencyProvider):
    """Injects a :class:`Store` on the service's own database.

    ``indexes`` maps collection name to IndexModels, created at start;
    ``group_commit`` names collections whose inserts are batched;
    ``partitioned`` names collections kept per park (see :class:`Partitions`);
    ``retired`` maps collection name to the names of indexes an earlier
    release made and nothing reads any more, dropped at start (each costs
    every write of the collection).
    """

    def __init__(self, indexes: dict[str, list[IndexModel]] | None = None, group_commit: Iterable[str] = (),
                 partitioned: Iterable[str] = (), retired: dict[str, list[str]] | None = None) -> None:
        self.indexes = {name: list(models) for name, models in (indexes or {}).items()}
        self.retired = {name: list(names) for name, names in (retired or {}).items()}
        self.group_commit = tuple(group_commit)
        self.partitioned = frozenset(partitioned)
        check_indexes(self.indexes)
        self.kernel_indexes: dict[str, list[IndexModel]] = {}
        self._dependents: list[Event] = []  # events sent by other providers once they no longer need the client

    def add_kernel_indexes(self, collection: str, models: list[IndexModel]) -> None:
        """For other kernel providers: the outbox relay's index is platform
        bookkeeping across parks, the one index that does not lead with park_id."""
        self.kernel_indexes.setdefault(collection, []).extend(models)
        if collection in self.partitioned:  # created with each partition's own indexes
            self.indexes.setdefault(collection, []).extend(models)

    def setup(self) -> None:
        self.log = logs.get_logger(component="mongo")
        self.scans = ScanFinder(self.container.service_name, self, self.log) \
            if settings.get_int("DB_CHECK_SCANS") else None
        self.requests = RequestCounter(self.container.service_name, self.scans.shapes if self.scans else None)
        self.database_name = "{}{}".format(settings.get("MONGO_DB_PREFIX"), self.container.service_name)
        self.client: MongoClient = MongoClient(
            settings.get("MONGO_URI"),
            serverSelectionTimeoutMS=5000,
            connectTimeoutMS=5000,
            socketTimeoutMS=60000,  # bounds a write, so a staged event is settled within minutes
            appname="lamplight-{}".format(self.container.service_name),
            tz_aware=True,
            event_listeners=[self.requests],
        )
        self.db = self.client[self.database_name]
        self.partitions = Partitions(self.db, self.partitioned, self.indexes)
        # physical collection -> GroupCommit; a partition's is made on first use
        self.committers: dict[str, GroupCommit] = {}
        self.batchers: dict[str, Batcher] = {}  # kernel collection -> its Batcher (batcher())
        self.collections: dict[str, Collection] = {}  # shared by every worker's Store
        self.started = False
        for name in self.group_commit:
            if name not in self.partitioned:
                self.committer(name, name)

    def start(self) -> None:
        wanted = {name: list(models) for name, models in self.indexes.items() if name not in self.partitioned}
        for name, models in self.kernel_indexes.items():
            if name in self.partitioned:
                continue
            wanted.setdefault(name, []).extend(models)
        for collection, models in wanted.items():
            existing = set(self.db[collection].index_information())
            for model in models:
                # one command per missing index: FerretDB 1.24 drops the
                # connection when one createIndexes re-creates several
                if model.document["name"] not in existing:
                    self.db[collection].create_indexes([model])
        for collection, names in self.retired.items():
            existing = set(self.db[collection].index_information())
            for name in names:
                if name in existing:
                    try:
                        self.db[collection].drop_index(name)
                    except OperationFailure as exc:
                        if exc.code != INDEX_NOT_FOUND:
                            raise  # else another replica dropped it first
        self.started = True
        for committer in list(self.committers.values()) + list(self.batchers.values()):
            self._run(committer)
        if self.scans is not None:
            self.container.spawn_managed_thread(self.scans.run, identifier="scan-finder")

    def committer(self, physical: str, name: str) -> GroupCommit | None:
        """The group commit of a collection named in ``group_commit`` (one per
        park partition of a partitioned one), or None."""
        if name not in self.group_commit:
            return None
        committer = self.committers.get(physical)
        if committer is None:
            committer = self.committers[physical] = GroupCommit(
                self.db[physical], settings.get_int("STORE_BATCH_MAX"),
                settings.get_float("STORE_BATCH_WAIT_MS") / 1000.0)
            if self.started:
                self._run(committer)
        return committer

    def batcher(self, name: str, kind: Callable[..., Batcher]) -> Batcher:
        """The process's batcher of ``kind`` on kernel collection ``name``,
        made on first use (the writes of the process's workers to it share
        requests: ``lamplight.alarms.RingCommit``)."""
        batcher = self.batchers.get(name)
        if batcher is None:
            batcher = self.batchers[name] = kind(
                self.db[name], settings.get_int("STORE_BATCH_MAX"), settings.get_float("STORE_BATCH_WAIT_MS") / 1000.0)
            if self.started:
                self._run(batcher)
        return batcher

    def _run(self, committer: Batcher) -> None:
        committer.thread = self.container.spawn_managed_thread(
            committer.run, identifier="group-commit-{}".format(committer.collection.name))

    def keep_open_for(self, stopped: Event) -> None:
        """Keep the client open at stop until ``stopped`` (an eventlet Event)
        is sent, for at most MONGO_CLOSE_WAIT_S: nameko stops a container's
        providers side by side, and another provider (the outbox removing its
        writer's record) may still write as it stops."""
        self._dependents.append(stopped)

    def stop(self) -> None:
        for stopped in self._dependents:
            with eventlet.Timeout(settings.get_float("MONGO_CLOSE_WAIT_S"), False):
                stopped.wait()
        self.kill()

    def kill(self) -> None:
        for committer in list(self.committers.values()) + list(self.batchers.values()):
            if committer.thread is not None:
                committer.thread.kill()
        self.client.close()

    def store(self) -> Store:
        return Store(self.db, self.committer, self.log, self.partitions, self.collections, self.batcher)

    def get_dependency(self, worker_ctx: WorkerContext) -> Store:
        return self.store()

    def readiness(self) -> list[tuple[str, bool, str]]:
        try:
            with eventlet.Timeout(2):
                self.client.admin.command("ping")
            return [("mongodb", True, "ok")]
        except (Exception, eventlet.Timeout) as exc:
            return [("mongodb", False, "{}: {}".format(type(exc).__name__, exc))]


__all__ = ["Mongo", "Store", "IndexModel", "DuplicateKeyError", "VersionedDocument", "check_park_id", "utcnow"]

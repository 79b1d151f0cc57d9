"""The outbox provider a worker's Events stage into and publish through, in
memory, for tests without a broker: what was published, what was discarded,
what is still staged. It is strict where the real one cannot check: the same
event is never staged twice, and only staged events are published or discarded."""
from types import SimpleNamespace

from lamplight.publishing import Events


class RecordingOutbox:
    """``published``: the service's PUBLISHED, when events it does not declare must be refused."""

    def __init__(self, service="needs", published=None):
        self.service, self.writer_id = service, service + "-test-1"
        self.registered = None if published is None else {p.type: p for p in published}
        self.staged, self.published, self.discarded, self.doubtful = {}, [], [], []

    def expand(self, envelopes):
        return list(envelopes)

    def stage(self, envelopes):
        for e in envelopes:
            assert e["id"] not in self.staged, "staged twice"
            self.staged[e["id"]] = e
        return None

    def unstage(self, envelopes):
        for e in envelopes:
            self.staged.pop(e["id"])
            self.discarded.append(e)

    def doubt(self, envelopes):
        for e in envelopes:
            assert e["id"] in self.staged, "only a staged event can be in doubt"
            self.doubtful.append(e)

    def publish(self, envelopes):
        for e in envelopes:
            self.staged.pop(e["id"])
            self.published.append(e)
        return True

    def types(self):
        return [e["type"] for e in self.published]


def events(outbox):
    """A worker's Events over ``outbox``."""
    return Events(outbox, SimpleNamespace(context_data={}))


def ids(envelopes):
    return [e["id"] for e in envelopes]

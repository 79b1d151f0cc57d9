"""A park's configuration as an in-memory repository holds it."""
import copy


def configured(schema, body, park_id="quanlinan"):
    """``body`` as installed: loaded by the service's schema, with its park."""
    return dict(schema.load(body), park_id=park_id)


class InstalledConfig:
    """The part of ParkConfig the handlers use: the installed configuration, a copy per read."""

    def __init__(self, config):
        self.config = config

    def require(self):
        return copy.deepcopy(self.config)

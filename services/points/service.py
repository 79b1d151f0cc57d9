"""The points service. The foundation runs it with the kernel (probes,
metrics, outbox) and answers balances; the ledger comes with the points issue."""
from datetime import datetime, timezone

from lamplight.rpc import rpc

from lamplight.errors import BadInput
from lamplight.observability import Observability
from lamplight.publishing import EventOutbox
from lamplight.storage import Mongo
from services.points import domain
from services.points.schemas import AccountViewSchema
from services.points.store import INDEXES, PointsStore

_account_view = AccountViewSchema()


class PointsService:
    name = "points"

    log = Observability()
    db = Mongo(indexes=INDEXES)
    events = EventOutbox(collections=("accounts",))

    @rpc(expected_exceptions=(BadInput,))
    def account(self, park_id, member_id, year=None):
        year = year or datetime.now(timezone.utc).year
        if not isinstance(year, int) or not 2000 <= year <= 2100:
            raise BadInput("year is out of range", {"year": ["must be 2000-2100"]})
        account = PointsStore(self.db, park_id).account(member_id, year) or domain.opening_account(
            park_id, member_id, year)
        return _account_view.dump(dict(account, warning=domain.warning_level(account["balance"])))

import pytest
from pymongo import ASCENDING, IndexModel

from lamplight.errors import BadInput
from lamplight.storage import Mongo, check_park_id


def test_an_index_that_does_not_start_with_park_id_is_refused():
    with pytest.raises(ValueError, match="does not start with park_id"):
        Mongo(indexes={"needs": [IndexModel([("status", ASCENDING), ("park_id", ASCENDING)])]})


@pytest.mark.parametrize("bad", ["", "Quanlinan", "a b", "x" * 64, None, 7, "../etc"])
def test_park_ids_are_checked(bad):
    with pytest.raises(BadInput):
        check_park_id(bad)


def test_good_park_id():
    assert check_park_id("quanlinan-2") == "quanlinan-2"


def test_the_stores_of_one_process_share_one_pymongo_collection_per_name():
    from pymongo import MongoClient

    from lamplight import logs
    from lamplight.storage import Store

    db = MongoClient("mongodb://127.0.0.1:1", connect=False)["lamplight_unit"]
    shared: dict = {}
    first = Store(db, lambda physical, name: None, logs.get_logger(), collections=shared)
    second = Store(db, lambda physical, name: None, logs.get_logger(), collections=shared)
    assert first.park("quanlinan")["needs"]._c is second.park("fuyang")["needs"]._c
    assert first["tasks"]._c is second.park("quanlinan")["tasks"]._c
    assert set(shared) == {"needs", "tasks"}

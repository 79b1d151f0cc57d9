"""The Store a repository runs on in the handler tests on the server: the
service's database of this test run, with the service's indexes."""
from lamplight import logs
from lamplight.storage import Partitions, Store


def server_store(mongo_client, db_prefix, service, indexes, partitioned=()):
    db = mongo_client[db_prefix + service]
    for name, models in indexes.items():
        if models and name not in partitioned:
            db[name].create_indexes(models)
    return Store(db, lambda physical, name: None, logs.get_logger(component=service + "-handlers"),
                 Partitions(db, partitioned, indexes) if partitioned else None)

"""What the benchmarks share: the broker's management API, a fresh vhost,
percentiles, dropping a run's databases."""
import base64
import json
import os
import urllib.request

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
MGMT = "http://127.0.0.1:15672"
MONGO_URI = os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27018/")


def mgmt(method, path, body=None):
    req = urllib.request.Request(MGMT + path, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def fresh_vhost(name):
    """An empty vhost (deleted first if a run left it); returns its AMQP URI."""
    try:
        mgmt("DELETE", "/api/vhosts/" + name)
    except Exception:
        pass
    mgmt("PUT", "/api/vhosts/" + name)
    mgmt("PUT", "/api/permissions/{}/guest".format(name), {"configure": ".*", "write": ".*", "read": ".*"})
    return AMQP + name


def delete_vhost(name):
    mgmt("DELETE", "/api/vhosts/" + name)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def drop_databases(prefix):
    import pymongo

    client = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=5000)
    for name in client.list_database_names():
        if name.startswith(prefix):
            client.drop_database(name)
    client.close()

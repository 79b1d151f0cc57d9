"""One FerretDB process of its own on 127.0.0.1: a free port, a temporary data
directory, SQLite; for the server tests and the benchmarks that compare builds
or settings of the server side by side."""
import os
import socket
import subprocess
import tempfile
import time

from pymongo import MongoClient


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``binary`` serving SQLite (``query``: the SQLite URL's query string, e.g.
    ``?_pragma=busy_timeout(50)``; ``env_extra``: more of its environment);
    ``client`` talks to it, with a pool of ``pool_size`` connections. Its data
    in a temporary directory, or in ``directory``, which it leaves in place
    (another build may open it next)."""

    def __init__(self, binary, query="", pool_size=64, directory=None, **env_extra):
        self.dir = tempfile.TemporaryDirectory(prefix="ferretdb-test-") if directory is None else None
        path = str(directory) if directory is not None else self.dir.name
        self.port = _free_port()
        env = dict(os.environ, FERRETDB_HANDLER="sqlite", FERRETDB_SQLITE_URL="file:{}/{}".format(path, query),
                   FERRETDB_LISTEN_ADDR="127.0.0.1:{}".format(self.port), FERRETDB_TELEMETRY="disable",
                   FERRETDB_DEBUG_ADDR="-", FERRETDB_LOG_LEVEL="error", FERRETDB_STATE_DIR=path, **env_extra)
        self.proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = MongoClient("mongodb://127.0.0.1:{}/".format(self.port), serverSelectionTimeoutMS=10000,
                                  tz_aware=True, maxPoolSize=pool_size)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.client.admin.command("ping")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self):
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)
        if self.dir is not None:
            self.dir.cleanup()

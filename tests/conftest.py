from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Real specs and payloads, shipped with the tests (see tests/fixtures/contracts/README.md).
FIXTURES = ROOT / "tests" / "fixtures" / "contracts"
CONTRACTS = Path(os.environ.get("MIRROR_TEST_CONTRACTS", FIXTURES))
#: The project's reference set, when a checkout has it beside the clone (optional).
SHARED_CONTRACTS = ROOT.parent / "shared" / "contracts"


def contract(relative: str) -> Any:
    """A real payload from tests/fixtures/contracts (a deep copy, safe to modify)."""
    path = CONTRACTS / relative
    if not path.exists():
        pytest.fail(f"contract file missing: {path}")
    return copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))


def eventually(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (for work done by threads,
    webhooks and other processes); its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def emulator_config(cw: Any, db: Path | str, **extra: Any) -> Any:
    """A Config pointing at emulator ``cw`` with its bot token, fast retries, no pacing."""
    from chatwoot_mirror import Config

    values = dict(url=cw.url, inbox_identifier=cw.inbox_identifier, account_id=cw.account_id,
                  bot_token=cw.bot_token, db_path=str(db), max_requests_per_minute=0,
                  retry_base_seconds=0.02, retry_max_seconds=0.1)
    return Config(**{**values, **extra})


def serve_wsgi(app: Any, host: str = "127.0.0.1"):
    """``app`` on a real threaded WSGI server on a free port of ``host``, serving in a
    daemon thread; call ``.shutdown()`` on the result when done."""
    import threading

    from werkzeug.serving import make_server

    server = make_server(host, 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "mirror.db")


@pytest.fixture(autouse=True)
def _reset_default_mirror():
    import chatwoot_mirror

    chatwoot_mirror.set_default_mirror(None)
    yield
    chatwoot_mirror.set_default_mirror(None)


@pytest.fixture
def caplog_all(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="chatwoot_mirror")
    return caplog


class RedisServer:
    """Debian's ``redis-server`` on a free loopback port, in its own folder (so that a
    restart with persistence on finds its append-only file again)."""

    def __init__(self, folder: Path, *, appendonly: bool = False, port: int | None = None,
                 password: str | None = None, start: bool = True,
                 extra: tuple[str, ...] = ()) -> None:
        import shutil

        binary = shutil.which("redis-server")
        assert binary is not None
        self.binary, self.folder, self.appendonly = binary, folder, appendonly
        self.password, self.extra = password, extra
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Any = None
        if start:
            self.start()

    def start(self) -> None:
        import subprocess

        import redis

        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.folder), "--save", "", "--appendonly",
             "yes" if self.appendonly else "no", "--appendfsync", "always",
             *(("--requirepass", self.password) if self.password else ()), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1, password=self.password)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis writes its AOF and exits
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown of its own (what appendfsync always wrote is all there is)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, Redis's rule) is free too."""
    import socket

    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


#: Where Redis is required, its tests must run, never skip (CI sets it).
REDIS_REQUIRED = os.environ.get("MIRROR_TEST_REQUIRE_REDIS") == "1"


def need_redis() -> None:
    import shutil

    problem = None
    if shutil.which("redis-server") is None:
        problem = "no redis-server on this machine (apt-get install redis-server)"
    else:
        try:
            import redis  # noqa: F401
        except ImportError:
            problem = "the redis package is not installed (pip install -e '.[test]')"
    if problem:
        if REDIS_REQUIRED:
            pytest.fail(f"Redis is required here: {problem}")
        pytest.skip(f"{problem}; CI installs it")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A store URL on the shared test Redis, with a prefix of this test's own."""
    import uuid

    return f"{redis_server.url}?prefix=t{uuid.uuid4().hex[:10]}:"


class SentinelSet:
    """A master, one replica and three Sentinels watching them (quorum 2), each a real
    process on loopback: Redis Sentinel as operators run it, small."""

    SERVICE = "mymaster"

    def __init__(self, folder: Path) -> None:
        import shutil
        import subprocess

        self.master = RedisServer(folder / "master", appendonly=True)
        self.replica = RedisServer(folder / "replica", appendonly=True, extra=(
            "--replicaof", "127.0.0.1", str(self.master.port)))
        binary = shutil.which("redis-sentinel")
        command = [binary] if binary else [shutil.which("redis-server") or "redis-server"]
        self.ports = [free_port() for _ in range(3)]
        self.sentinels: list[Any] = []
        for port in self.ports:
            conf = folder / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n")
            self.sentinels.append(subprocess.Popen(
                [*command, str(conf), *([] if binary else ["--sentinel"])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.wait_until(lambda: self.replicas_known() and self.sentinels_known())

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{nodes}/{self.SERVICE}/0"

    def ask(self, *command: str) -> Any:
        import redis

        client = redis.Redis(port=self.ports[0], socket_timeout=2, decode_responses=True)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def master_port(self) -> int:
        return int(self.ask("SENTINEL", "get-master-addr-by-name", self.SERVICE)[1])

    def replicas_known(self) -> bool:
        try:
            return bool(self.ask("SENTINEL", "replicas", self.SERVICE))
        except Exception:
            return False

    def sentinels_known(self) -> bool:
        try:
            return len(self.ask("SENTINEL", "sentinels", self.SERVICE)) >= 2
        except Exception:
            return False

    @staticmethod
    def wait_until(predicate: Any, timeout: float = 60.0) -> None:
        assert eventually(predicate, timeout), "the Sentinel set did not settle"

    def stop(self) -> None:
        for process in self.sentinels:
            process.kill()
            process.wait(10)
        self.master.stop()
        self.replica.stop()


class RedisClusterSet:
    """A Redis Cluster of three masters, no replicas (``redis-cli --cluster create``), each
    a real process on loopback with its append-only file, so a master killed and
    restarted comes back with its slots and its data."""

    def __init__(self, folder: Path, masters: int = 3) -> None:
        import shutil
        import subprocess

        self.nodes = [RedisServer(folder / f"node-{i}", appendonly=True, port=free_cluster_port(),
                                  extra=(
                                      "--cluster-enabled", "yes", "--cluster-config-file",
                                      "nodes.conf", "--cluster-node-timeout", "2000"))
                      for i in range(masters)]
        cli = shutil.which("redis-cli")
        assert cli is not None, "redis-cli (Debian's redis-tools) is needed for a cluster"
        subprocess.run([cli, "--cluster", "create",
                        *(f"127.0.0.1:{node.port}" for node in self.nodes),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)
        self.wait_until_ok()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def ok(self) -> bool:
        import redis

        for node in self.nodes:
            client = redis.Redis(port=node.port, socket_timeout=2, decode_responses=True)
            try:
                if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return True

    def wait_until_ok(self, timeout: float = 120.0) -> None:
        assert eventually(self.ok, timeout), "the cluster did not reach cluster_state:ok"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory):
    need_redis()
    cluster = RedisClusterSet(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory):
    need_redis()
    sentinels = SentinelSet(tmp_path_factory.mktemp("sentinel"))
    yield sentinels
    sentinels.stop()

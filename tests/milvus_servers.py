"""Start and stop real Milvus servers for tests: milvus-lite's gRPC server and Milvus standalone.

Both bind 127.0.0.1 on a free port, are waited for by polling a health condition (never a
fixed sleep), and are stopped by their own PID (SIGTERM, then SIGKILL if they linger).

The Milvus standalone server (PyPI `milvus==2.3.5`) listens on every interface whatever its
configuration, so it is only started when this process runs in a network namespace whose only
interface is loopback (`../shared/tools/loopback-only CMD`, which CI wraps around the tests).
`standalone_unavailable()` gives the one-line reason when it cannot run here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

STANDALONE_VERSION = "2.3.5"
STANDALONE_TOKEN = "root:Milvus"  # the default root user, used when authorization is on
START_TIMEOUT = 120.0  # seconds; measured here: lite server ~1-3 s, standalone ~3-8 s
STOP_TIMEOUT = 30.0
# Standalone: a graceful stop waits for the query node's segments to move to another node,
# which a standalone never has (1800 s by default), and after a forced stop the next start
# waits for the old sessions' etcd leases (30 s by default) before it reloads collections.
GRACEFUL_STOP_SECONDS = 1
SESSION_TTL_SECONDS = 4
# Polling intervals shortened for a test server (defaults 1000, 500 and 200 ms): loading a
# collection waits for query-coord checks, Strong reads wait for the next time tick.
TEST_TUNING = {
    "queryCoord.checkInterval": 200,
    "queryCoord.distPullInterval": 100,
    "proxy.timeTickInterval": 100,
}
LOOPBACK_HINT = "run the tests under ../shared/tools/loopback-only"


class ServerError(RuntimeError):
    """A test server did not come up (or died); the message carries its log's tail."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def non_loopback_interfaces() -> list[str]:
    """Network interfaces of *this process's* namespace other than loopback.

    `socket.if_nameindex()` asks the kernel about the caller's namespace; /sys/class/net
    still lists the host's interfaces inside `unshare -n` (sysfs is not remounted).
    """
    return sorted(name for _, name in socket.if_nameindex() if name != "lo")


def standalone_unavailable() -> str | None:
    """Why a Milvus standalone server cannot be started here, or None if it can."""
    try:
        import milvus  # PyPI `milvus`: the standalone server binaries plus a small launcher
    except ImportError:
        return f'PyPI package "milvus=={STANDALONE_VERSION}" is not installed'
    if milvus.__version__ != STANDALONE_VERSION:
        return f"milvus {milvus.__version__} is installed, these tests expect {STANDALONE_VERSION}"
    if not sys.platform.startswith("linux"):
        return f"the milvus wheel's server runs on Linux only, not {sys.platform}"
    others = non_loopback_interfaces()
    if others:
        return (
            f"it listens on every interface and this process can reach {', '.join(others)}: "
            + LOOPBACK_HINT
        )
    return None


def wait_until(
    condition: Callable[[], bool],
    what: str,
    proc: subprocess.Popen,
    timeout: float = START_TIMEOUT,
    log: Path | None = None,
) -> float:
    """Poll `condition` until it holds; fail at once if `proc` exits. Returns seconds taken.

    Between polls it waits on the process itself (`proc.wait` with a short timeout), so a
    server that dies is noticed immediately rather than after the whole timeout.
    """
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise ServerError(f"{what}: exited with code {proc.returncode}{_tail(log)}")
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise ServerError(f"{what}: not ready after {timeout:.0f} s{_tail(log)}")
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass


def poll_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> float:
    """Poll `condition` every 50 ms until it holds; raise after `timeout`. Returns seconds."""
    started = time.monotonic()
    pause = threading.Event()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not true after {timeout:.0f} s")
        pause.wait(0.05)
    return time.monotonic() - started


def _tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(line[:300] for line in text)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def milvus_answers(uri: str, token: str = "") -> bool:
    """A real round trip: connect and list collections. Its own channel, closed afterwards:
    pymilvus shares one channel per address, and the probe's options must not become the
    channel the code under test gets."""
    from pymilvus import MilvusClient

    try:
        client = MilvusClient(uri=uri, token=token, timeout=5, dedicated=True)
    except Exception:
        return False
    try:
        client.list_collections()
        return True
    except Exception:
        return False
    finally:
        client.close()


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 30.0) -> int:
    """Signal the process by its PID, wait `grace` seconds, then SIGKILL it; returns its
    exit code. Nothing is left running: the process is always waited for."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)
    return proc.returncode


class Server:
    """A server process on 127.0.0.1:port over a data directory; start, stop, restart."""

    name = "server"
    token = ""
    stop_signal, stop_grace = signal.SIGTERM, STOP_TIMEOUT

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir.parent / f"{self.data_dir.name}.{self.name}.log"
        self.start_seconds: list[float] = []  # every start, for the report

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, self.stop_signal, self.stop_grace)
            self.proc = None

    def restart(self) -> float:
        """Stop and start again on the same data directory and the same port."""
        self.stop()
        return self.start()

    def _spawn(self, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, cwd=cwd,
            )  # fmt: skip

    def _ready(self, *conditions: Callable[[], bool]) -> None:
        assert self.proc is not None
        for condition in conditions:
            wait_until(condition, f"{self.name} on port {self.port}", self.proc, log=self.log)


class LiteServer(Server):
    """`milvus-lite server --data-dir DIR --host 127.0.0.1 --port P`: one Milvus Lite database
    shared over gRPC by any number of processes (embedded, one process holds its lock)."""

    name = "milvus-lite"
    stop_signal = signal.SIGINT  # its Ctrl-C path drains requests and closes the database

    def start(self) -> float:
        started = time.monotonic()
        exe = Path(sys.executable).with_name("milvus-lite")
        cmd = [str(exe), "server", "--data-dir", str(self.data_dir)]
        self.proc = self._spawn(cmd + ["--host", "127.0.0.1", "--port", str(self.port)])
        self._ready(lambda: port_open(self.port), lambda: milvus_answers(self.uri))
        self.start_seconds.append(time.monotonic() - started)
        return self.start_seconds[-1]


class StandaloneServer(Server):
    """The real Milvus 2.3.5 standalone server from PyPI `milvus` (its `milvus-server` command).

    The `milvus` package is used as a library, as `milvus-server --data DIR` does (resolve
    ports, write configs/milvus.yaml, unpack the binaries, run `milvus run standalone`), but
    the process kept is the server itself, so it is stopped by its own PID with a SIGTERM
    (the `milvus-server` wrapper would SIGKILL it one second after Ctrl-C). The proxy (gRPC,
    what MILVUS_URI points at) and the health port are free ports; etcd and the internal
    components get free ports from the package. With `auth`, authorization is on and
    clients must pass MILVUS_TOKEN (`root:Milvus`).
    """

    name = "milvus-standalone"
    # SIGTERM, then SIGKILL after GRACEFUL_STOP_SECONDS + 2: a standalone's graceful stop
    # does not always honour its own timeout. Every acknowledged write is already in its
    # write-ahead log (rocksmq); test_search_again_after_restart checks it comes back.
    stop_grace = GRACEFUL_STOP_SECONDS + 2

    def __init__(self, data_dir: Path, port: int | None = None, auth: bool = True):
        super().__init__(data_dir, port)
        self.auth = auth
        self.token = STANDALONE_TOKEN if auth else ""
        self.health_port: int | None = None

    def start(self) -> float:
        reason = standalone_unavailable()
        if reason:
            raise ServerError(f"Milvus standalone cannot start here: {reason}")
        from milvus import MilvusServer, MilvusServerConfig

        started = time.monotonic()
        config = MilvusServerConfig(data_dir=str(self.data_dir))
        server = MilvusServer(config, wait_for_started=False)
        config.resolve()  # picks free ports for etcd and the components, writes milvus.yaml
        # The proxy port is set after `resolve`: its bind check (without SO_REUSEADDR)
        # refuses the port a restart reuses while old connections are in TIME_WAIT.
        config.set("proxy_port", self.port)
        config.set("authorization_enabled", self.auth)
        config.set("common.gracefulStopTimeout", GRACEFUL_STOP_SECONDS)
        config.set("common.session.ttl", SESSION_TTL_SECONDS)
        for key, value in TEST_TUNING.items():
            config.set(key, value)
        config.write_config()
        bin_dir = _unpack_binaries(Path(config.base_data_dir))
        self.health_port = free_port()
        env = dict(os.environ)
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self.health_port),  # /healthz is served there
            MILVUS_RUN_DIR=str(self.data_dir / "run"),
            LD_LIBRARY_PATH=f"{bin_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        )
        assert Path(server.get_milvus_executable_path()).parent == bin_dir
        self.proc = self._spawn([str(bin_dir / "milvus"), "run", "standalone"], env, self.data_dir)
        self._ready(self._healthy, lambda: milvus_answers(self.uri, self.token))
        self.start_seconds.append(time.monotonic() - started)
        return self.start_seconds[-1]

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return b"OK" in resp.read()
        except (OSError, urllib.error.URLError):
            return False


def _unpack_binaries(base_dir: Path) -> Path:
    """DATA_DIR/bin with the server binaries (~57 MB of lzma -> ~300 MB).

    The package unpacks them into every data directory; here they are unpacked once per
    machine into a cache (md5-checked against the wheel, so an upgrade refreshes them) and
    DATA_DIR/bin links to it, which saves ~3 s of decompression per fresh data directory.
    """
    from milvus import _initialize_data_files

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache / "corpusflow" / f"milvus-{STANDALONE_VERSION}"
    link = base_dir / "bin"
    if link.is_dir() and not link.is_symlink():  # a data directory milvus-server made itself
        _initialize_data_files(str(base_dir))
        return link
    _initialize_data_files(str(cache))
    if not link.is_symlink():
        link.symlink_to(cache / "bin", target_is_directory=True)
    return link

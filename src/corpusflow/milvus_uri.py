"""Where Milvus lives and how to reach it: local (Milvus Lite file) or server URIs, their
credential-free identity, gRPC channel options, and Milvus Lite's lock and open failures."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def is_local_uri(uri: str) -> bool:
    return "://" not in uri


def uri_identity(uri: str) -> str:
    """Where a collection lives, without credentials: the Lite file's absolute path, or the
    server's scheme://host:port/path (user and password dropped)."""
    if is_local_uri(uri):
        return os.path.abspath(uri)
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# pymilvus pings every 10 s even without calls in flight (keepalive_time_ms 10000,
# keepalive_permit_without_calls). Milvus Lite's server is grpcio with its default policy:
# a connection with no call in flight may be pinged once per 2 hours, during a call once per
# 5 minutes, and the third ping too soon gets GOAWAY "too_many_pings", which grpc logs as an
# error line on stderr. Pinging a server on this machine detects nothing, so against Milvus
# Lite (a file, or `milvus-lite server` on loopback) pings go only with a call in flight,
# at most every 6 minutes: within the policy, and still a check on a call that never ends.
LITE_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 360_000,
    "grpc.keepalive_permit_without_calls": False,
}
_LOOPBACK = re.compile(r"^(?:https?|tcp|grpc)://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?/?$")


# Milvus Lite keeps inserted rows in an in-memory table and flushes it to a Parquet segment
# once it holds MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES (128 MiB by default, read once when
# milvus_lite is imported). At 128 MiB a first ingest of up to ~40k chunks stays in memory
# whole, then is flushed, compacted and indexed while the run closes. At 16 MiB (~5k chunks)
# segments are written as the run goes and indexed in Lite's background thread: rebuilding
# 17.5k chunks from the caches in a fresh CLI process took 15.4-22.4 s (peak RSS 729-741 MB),
# now 12.8-15.9 s (583-622 MB), alternating runs; 8 and 32 MiB were slower than 16. A value
# set in the environment wins.
LITE_MEMTABLE_BYTES = 16 << 20


def lite_defaults() -> None:
    """Milvus Lite's engine settings, before milvus_lite is first imported."""
    os.environ.setdefault("MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES", str(LITE_MEMTABLE_BYTES))


def grpc_options(uri: str) -> dict[str, Any]:
    """Channel options for `uri`: Milvus Lite's keepalive-compatible ones on this machine."""
    return dict(LITE_GRPC_OPTIONS) if is_local_uri(uri) or _LOOPBACK.match(uri) else {}


def lite_key(uri: str) -> str:
    return os.path.abspath(uri)


def lock_holder(uri: str) -> str | None:
    """Who holds the Milvus Lite lock on `uri` ("pid 123: corpusflow ingest"), if anyone else.

    Reads /proc/locks (Linux); None when the lock is free, unknown, or held by this process.
    """
    lock = Path(uri) / "LOCK"
    try:
        inode = lock.stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 00:2b:1234567 0 EOF"
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].split(":")[-1] == str(inode):
            pid = int(parts[4])
            if pid == os.getpid():
                return None
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                raw = ""
            cmd = " ".join(raw.replace("\0", " ").split())
            return f"pid {pid}" + (f": {cmd[:80]}{'…' if len(cmd) > 80 else ''}" if cmd else "")
    return None


@contextmanager
def lite_open_failures() -> Iterator[list[BaseException]]:
    """milvus-lite logs a traceback when it cannot open a database (to stderr, through
    logging's last resort); keep the exceptions instead, to report them in one line."""
    logger = logging.getLogger("milvus_lite.server_manager")
    found: list[BaseException] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and record.exc_info[1] is not None:
                found.append(record.exc_info[1])

    handler, propagate = _Keep(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

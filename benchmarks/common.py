"""Shared benchmark plumbing: params under a scratch root, contexts, timers, machine facts."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

from corpusflow import OFFLINE_ENV  # noqa: E402  (one list of offline switches)

# Endpoints and secrets a user may have set: a benchmark must never reach them.
FOREIGN_ENV = ("MILVUS_URI", "MILVUS_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL", "COMET_API_KEY")


def offline_environ() -> None:
    """Make this process offline-first (as the Makefile does) and forget remote endpoints."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    for key in FOREIGN_ENV:
        os.environ.pop(key, None)


def child_env() -> dict[str, str]:
    """Environment for benchmark subprocesses: offline, no endpoints, repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update({k: env.get(k, v) for k, v in OFFLINE_ENV.items()})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def bench_params(root: Path, **sections: dict[str, Any]) -> Any:
    """Default params (as params.yaml ships them) with every path under `root`."""
    from corpusflow.config import Params

    base: dict[str, dict[str, Any]] = {
        "milvus": {"uri": str(root / "milvus.db")},
        "ingest": {
            "rejects": str(root / "rejects.jsonl"),
            "cache": str(root / "cache.sqlite"),
            "state": str(root / "state.sqlite"),
        },
        "snapshot": {"out": str(root / "snapshots" / "snapshot.json")},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Params.model_validate(base)


def make_context(root: Path, embedder: Any, **sections: dict[str, Any]) -> Any:
    """A pipeline Context on its own Milvus Lite and cache, with `embedder` injected."""
    from corpusflow.config import Env
    from corpusflow.pipeline import Context

    root.mkdir(parents=True, exist_ok=True)
    ctx = Context(bench_params(root, **sections), env=Env())
    if embedder is not None:
        ctx._embedder = embedder
    return ctx


def release_milvus_lite(uri: str) -> None:
    """Stop Milvus Lite's in-process server for `uri`: frees its memory and its lock.

    `MilvusClient.close()` leaves the server (and the data directory's lock) alive until
    the process exits, so another process could not open the same database.
    """
    if "://" in uri:
        return
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_server(uri)


def close_context(ctx: Any) -> None:
    """Close a Context and release its Milvus Lite database."""
    uri = ctx.env.milvus_uri or ctx.params.milvus.uri
    ctx.close()
    release_milvus_lite(uri)


def now() -> float:
    """A monotonic clock in seconds."""
    return time.perf_counter()


@dataclass
class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    seconds: float = 0.0
    _start: float = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def rate(n: float, seconds: float) -> float:
    """Items per second."""
    return n / seconds if seconds > 0 else float("inf")


def r3(x: float) -> float:
    """Rounded to 3 decimals, for reports."""
    return round(x, 3)


# ----------------------------------------------------------------------------------------
# stage breakdown: time spent in each step of a real `ingest()` call
# ----------------------------------------------------------------------------------------
@dataclass
class Stages:
    """Seconds and calls per stage, filled by `stage_timing`."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        """Count one call of `name` taking `seconds`."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def report(self, total: float) -> dict[str, float]:
        """Seconds per stage, largest first, plus `other`: what no stage accounts for."""
        out = {k: r3(v) for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1])}
        out["other"] = r3(total - sum(self.seconds.values()))
        return out


def timed_iter(items: Iterable[Any], stages: Stages, name: str = "extract") -> Iterator[Any]:
    """Yield from `items`, counting the time spent producing them (parsing) as `name`."""
    it = iter(items)
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            stages.add(name, time.perf_counter() - t)
            return
        stages.add(name, time.perf_counter() - t)
        yield item


@contextlib.contextmanager
def stage_timing(stages: Stages, embedder: Any = None) -> Iterator[Stages]:
    """Time chunking, Milvus reads/writes, cache reads/writes and model calls while inside.

    Patches the classes' methods (and the embedder instance) for the duration, so a plain
    `pipeline.ingest()` call is measured as it is, whatever its loop looks like.
    """
    from corpusflow.chunking import Chunker
    from corpusflow.embedding.cache import EmbeddingCache
    from corpusflow.store import MilvusStore

    targets: list[tuple[Any, str, str]] = [
        (Chunker, "split", "chunk"),
        (MilvusStore, "__init__", "milvus open"),
        (MilvusStore, "state_of", "milvus state query"),
        (MilvusStore, "upsert", "milvus upsert"),
        (MilvusStore, "delete_ids", "milvus delete"),
        (MilvusStore, "ensure_collection", "milvus create/load"),
        (EmbeddingCache, "get_many", "cache read"),
        (EmbeddingCache, "put_many", "cache write"),
    ]
    if embedder is not None:
        targets.append((embedder, "embed", "model"))
    saved: list[tuple[Any, str, Any, bool]] = []
    streaming = embedder is not None and callable(getattr(embedder, "embed_batches", None))

    depth: dict[str, int] = {}  # a stage calling itself (embed -> embed_batches) counts once

    def wrap(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if depth.get(name):
                return fn(*args, **kwargs)
            depth[name] = 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[name] = 0
                stages.add(name, time.perf_counter() - t)

        return timed

    def wrap_stream(fn: Callable[..., Iterator[Any]], name: str) -> Callable[..., Iterator[Any]]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            if depth.get(name):
                yield from fn(*args, **kwargs)
                return
            it = iter(fn(*args, **kwargs))
            while True:
                depth[name] = 1
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    depth[name] = 0
                    stages.add(name, time.perf_counter() - t)
                yield item

        return timed

    for owner, attr, name in targets:
        own = attr in vars(owner)
        original = getattr(owner, attr)
        saved.append((owner, attr, vars(owner).get(attr), own))
        setattr(owner, attr, wrap(original, name))
    if streaming:  # a remote embedder's requests, consumed as they complete
        saved.append((embedder, "embed_batches", None, False))
        embedder.embed_batches = wrap_stream(embedder.embed_batches, "model")
    try:
        yield stages
    finally:
        for owner, attr, original, own in reversed(saved):
            if own:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)


# ----------------------------------------------------------------------------------------
# machine
# ----------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": {
            name: _version(name)
            for name in (
                "pymilvus",
                "milvus-lite",
                "torch",
                "sentence-transformers",
                "tokenizers",
                "langchain-text-splitters",
                "webvtt-py",
                "openai",
                "numpy",
            )
        },
    }


def max_rss_kib() -> int:
    """This process's peak RSS so far (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _status_kib(key: str, pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def current_rss_kib() -> int:
    """This process's RSS right now (KiB)."""
    return _status_kib("VmRSS")


def peak_rss_kib(pid: int | str = "self") -> int:
    """This program's (or a running process's) peak RSS since exec (VmHWM, KiB): unlike
    ru_maxrss, not inherited; 0 when it cannot be read."""
    return _status_kib("VmHWM", pid)


def launch(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `cmd` in a fresh process under `benchmarks.launcher`; the command's last JSON line
    with the launcher's figures (seconds, cpu_seconds, maxrss_kib) under "launcher"."""
    import json
    import subprocess

    full = [sys.executable, "-m", "benchmarks.launcher", *cmd]
    proc = subprocess.run(full, cwd=cwd, env=env or child_env(), capture_output=True, text=True)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    launcher = next((x["launcher"] for x in reversed(lines) if "launcher" in x), None)
    report = next((x for x in reversed(lines) if "launcher" not in x), {})
    if proc.returncode != 0 or launcher is None:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {proc.stderr[-2000:]}")
    return {**report, "launcher": launcher}


def write_result(out: str | Path, result: dict, sort_keys: bool = False) -> Path:
    """A benchmark's JSON result at `out` (folders made), readable: indented, UTF-8."""
    import json

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, sort_keys=sort_keys, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def partial_keeper(out: str | Path) -> tuple[Path, Callable[..., None]]:
    """For a long run: the `.partial.json` beside `out`, and a function that rewrites it with
    what was measured so far (so a run that dies keeps it)."""
    partial = Path(out).with_suffix(".partial.json")

    def keep(**done: Any) -> None:
        write_result(partial, done, sort_keys=True)

    return partial, keep

"""The `watch` flow: streaming ingestion. New and changed files in watched directories are
ingested seconds after they land, each burst of changes as one `ingest` run.

Why a long-running flow and not a Prefect event trigger: a triggered deployment run starts a
new process for every change, and a fresh corpusflow process spends 6-13 s importing torch and
loading the model before any work, far over the 5 s a new file may wait here. Milvus Lite also
admits one process at a time, so concurrent triggered runs would queue on its lock anyway.
One flow run that keeps the model loaded, watches with `watchfiles` (inotify), and runs the
batch `ingest` flow as a subflow per change set keeps the same code path and guarantees
(deterministic ids, upserts, stale chunks deleted after, every input in Milvus or in the
rejects file) with sub-second overhead; each subflow run has its own name and artifacts.

- A burst (a yt-dlp download: transcript + info.json; a copy of many files) arrives within
  `step_ms` of quiet, capped at `debounce_ms`: it becomes one change set, hence one run.
  Changes that land while a run is busy are kept and form the next change set.
- A file is ingested once per change: a path named twice in a burst is one input, and an
  unchanged rewrite (same bytes) is skipped by the incremental plan without embedding.
- Hidden files (`.name.tmp` while a writer is busy) are ignored: write elsewhere, rename in.
- On start, one incremental run over the watched directories catches up on files that
  landed while nothing watched (`catch_up`).
- A failed run keeps its paths pending; they are retried with the next change set, or after
  `retry_seconds` if nothing else changes.
- Deleted files are not removed from Milvus here: a batch run with `cleanup=full` does that.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from prefect import flow, get_run_logger, runtime  # noqa: E402
from watchfiles import Change, DefaultFilter  # noqa: E402
from watchfiles import watch as watch_changes  # noqa: E402

from corpusflow.config import ConfigError, Params, load_params  # noqa: E402
from corpusflow.pipeline import PipelineError  # noqa: E402
from corpusflow.sources.transcripts import EXTENSIONS, SIDECAR_SUFFIXES  # noqa: E402
from flows.ingest import ingest  # noqa: E402

ARTICLE_SUFFIXES = (".csv",)
TICK_MS = 1000  # the watcher wakes up this often when nothing changes (catch-up, retries)


class SourceFilter(DefaultFilter):
    """Transcripts, their sidecars and CSVs that were added or modified; no hidden names
    below a watched directory (as a batch run's directory walk skips them)."""

    def __init__(self, roots: Iterable[Path]) -> None:
        super().__init__()
        self.roots = list(roots)

    def _hidden(self, p: Path) -> bool:
        for root in self.roots:
            if p.is_relative_to(root):
                return any(part.startswith(".") for part in p.relative_to(root).parts)
        return p.name.startswith(".")

    def __call__(self, change: Change, path: str) -> bool:
        p = Path(path)
        if change == Change.deleted or self._hidden(p):
            return False
        if p.is_dir():  # a directory moved in: inotify names it, not the files inside
            return change == Change.added and super().__call__(change, path)
        name = p.name.lower()
        wanted = name.endswith(SIDECAR_SUFFIXES + EXTENSIONS + ARTICLE_SUFFIXES)
        return wanted and super().__call__(change, path)


def watched_directories(directories: list[str] | None, params: Params) -> list[Path]:
    """The given directories, or those of params.yaml's sources: transcript directories and
    the directories holding article CSVs. A missing directory is a user error."""
    if directories:
        chosen = [Path(d) for d in directories]
    else:
        src = params.sources
        chosen = [Path(p) if Path(p).is_dir() else Path(p).parent for p in src.transcripts]
        chosen += [Path(p) if Path(p).is_dir() else Path(p).parent for p in src.articles]
    missing = [str(d) for d in chosen if not d.is_dir()]
    if missing or not chosen:
        raise PipelineError(
            f"cannot watch {', '.join(missing)}: not a directory"
            if missing
            else "nothing to watch: give directories (or sources in params.yaml)"
        )
    return sorted({d.resolve() for d in chosen})


def sources_of(paths: Iterable[str | Path]) -> dict[str, list[str]]:
    """Changed paths as `ingest` parameters: CSVs are articles; a sidecar stands for the
    transcripts beside it; a directory (moved in) for the files under it; gone files are
    dropped. Sorted, each path once."""
    transcripts: set[str] = set()
    articles: set[str] = set()
    for raw in paths:
        path = Path(raw)
        name = path.name.lower()
        if path.is_dir():
            found = sources_of(existing_files([path]))
            transcripts.update(found["transcripts"])
            articles.update(found["articles"])
        elif name.endswith(SIDECAR_SUFFIXES):
            base = path.name[: -len(next(s for s in SIDECAR_SUFFIXES if name.endswith(s)))]
            transcripts.update(
                str(p)
                for p in path.parent.glob(f"{base}.*")
                if p.suffix.lower() in EXTENSIONS and not p.name.lower().endswith(SIDECAR_SUFFIXES)
            )
        elif not path.is_file():
            continue  # added and gone within the burst: no longer an input
        elif name.endswith(ARTICLE_SUFFIXES):
            articles.add(str(path))
        else:
            transcripts.add(str(path))
    return {"transcripts": sorted(transcripts), "articles": sorted(articles)}


def existing_files(roots: Iterable[Path]) -> list[str]:
    """The files under `roots` the watcher would react to, as if each had just been added."""
    roots = list(roots)
    keep = SourceFilter(roots)
    return sorted(
        str(p)
        for root in roots
        for p in root.rglob("*")
        if p.is_file() and keep(Change.added, str(p))
    )


def watch_run_name() -> str:
    dirs = runtime.flow_run.parameters.get("directories") or ["params.yaml sources"]
    return "watch · " + ", ".join(str(d) for d in dirs)


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    r = summary["result"]
    keys = ("run_id", "documents", "unchanged_documents", "chunks", "embedded", "added",
            "updated", "skipped", "deleted", "rejected")  # fmt: skip
    return {**{k: r[k] for k in keys}, "seconds": summary["seconds"]}


class Pending:
    """Paths waiting for a run: gathered from change sets, the catch-up scan, and failed runs
    (kept, and retried with the next change set or after `retry_seconds` of quiet)."""

    def __init__(self, roots: list[Path], catch_up: bool, retry_seconds: float) -> None:
        self.roots, self.caught_up, self.retry_seconds = roots, not catch_up, retry_seconds
        self.paths: set[str] = set()
        self.failed_at: float | None = None

    def take(self, changes: set[tuple[Change, str]]) -> tuple[dict[str, list[str]], bool]:
        """The sources to ingest now (empty lists: nothing to do) and whether it is the
        catch-up run. Called once per change set; the first call comes once the watcher is
        live, so that nothing landing after the catch-up scan is missed."""
        catching_up = not self.caught_up
        if catching_up:
            self.paths.update(existing_files(self.roots))
            self.caught_up = True
        self.paths.update(path for _, path in changes)
        waiting = self.failed_at is not None and not changes
        if waiting and time.monotonic() - self.failed_at < self.retry_seconds:
            return {"transcripts": [], "articles": []}, False
        sources = sources_of(self.paths)
        self.paths.clear()
        return sources, catching_up

    def done(self, sources: dict[str, list[str]], ok: bool) -> None:
        if ok:
            self.failed_at = None
        else:
            self.paths.update(sources["transcripts"] + sources["articles"])
            self.failed_at = time.monotonic()


@flow(name="watch", flow_run_name=watch_run_name, description="Streaming ingestion of new files.")
def watch(
    directories: list[str] | None = None,
    params_file: str | None = None,
    catch_up: bool = True,
    debounce_ms: int = 1600,
    step_ms: int = 300,
    retry_seconds: float = 60.0,
    max_runs: int | None = None,
) -> dict[str, Any]:
    """Ingest what lands in `directories` (default: the source directories in params.yaml)
    until cancelled, or after `max_runs` change sets (tests, benchmarks).

    Args:
        directories: directories to watch, recursively.
        params_file: params file for the runs (default ./params.yaml).
        catch_up: first ingest the watched directories incrementally (files that landed
            while nothing watched); not counted in `max_runs`.
        debounce_ms: longest a burst of changes is gathered into one run.
        step_ms: quiet time that ends a burst.
        retry_seconds: when a run failed, retry its files after this long without changes.
        max_runs: stop after this many change-set runs (None: run until cancelled).
    """
    logger = get_run_logger()
    try:
        roots = watched_directories(directories, load_params(params_file))
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None
    runs: list[dict[str, Any]] = []
    pending = Pending(roots, catch_up, retry_seconds)
    logger.info("watching %s", ", ".join(map(str, roots)))
    for changes in watch_changes(
        *roots,
        watch_filter=SourceFilter(roots),
        debounce=debounce_ms,
        step=step_ms,
        rust_timeout=TICK_MS,  # an empty change set every TICK_MS of quiet
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        sources, catching_up = pending.take(changes)
        if not (sources["transcripts"] or sources["articles"]):
            continue
        logger.info("changed: %s", ", ".join(sources["transcripts"] + sources["articles"]))
        state = ingest(**sources, cleanup="incremental", params_file=params_file,
                       snapshot=False, return_state=True)  # fmt: skip
        pending.done(sources, state.is_completed())
        if not state.is_completed():
            logger.error("ingest run failed (%s); its files are retried later", state.message)
        elif not catching_up:
            runs.append(_brief(state.result()))
        if max_runs is not None and len(runs) >= max_runs:
            break
    return {"directories": [str(d) for d in roots], "runs": runs}


if __name__ == "__main__":
    watch()

"""The lineage ledger file, and the only code that writes it.

`lineage/ledger.jsonl` is append-only and kept in git, one JSON event a line (the events
are described in versioning.lineage). Every write goes through `Ledger`: `record_produced`
(the versioning step), `record_synced` and `record_consume_synced` (`comet sync`),
`record_consumed` (a downstream run such as the evaluation). Appends take an exclusive
lock on the file, so concurrent runs never interleave lines or hand out the same version
twice; reads skip a torn or foreign line with one warning (corpusflow.files.read_jsonl).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from corpusflow.files import jsonl_line, read_jsonl, write_line
from corpusflow.versioning.views import (
    LineageError,
    build_graph,
    next_number,
    numbering,
    pick,
    unfixed,
    well_formed,
)

Event = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Ledger:
    """An append-only JSONL file of lineage events."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def events(self) -> list[Event]:
        """All well-formed events in file order (see `read_jsonl`: torn or foreign lines
        are skipped with a one-line warning)."""
        return [e for e in read_jsonl(self.path) if well_formed(e, str(self.path))]

    @contextmanager
    def _locked(self) -> Iterator[IO[str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield f
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # --- writes ----------------------------------------------------------------------
    def append(self, event: Event) -> Event:
        """Append one event (a `time` is added when missing): the one low-level write the
        `record_*` methods share."""
        event = {"time": now(), **event}
        with self._locked() as f:
            write_line(f, jsonl_line(event))
        return event

    def record_produced(self, event: Event) -> Event:
        """Append a `produced` event, numbering its sha256 (new bytes get the next vN).

        `sources` is stored only the first time a version appears: same bytes, same sources.
        """
        with self._locked() as f:
            events = self.events()
            versions = numbering(events, str(self.path))
            for loser, version in unfixed(events, versions):
                write_line(
                    f,
                    jsonl_line(
                        {"time": now(), "event": "renumbered", "sha256": loser, "version": version}
                    ),
                )
            sha = event["sha256"]
            event = {"time": now(), **event, "event": "produced"}
            if sha in versions:
                event["version"] = versions[sha]
                event.pop("sources", None)
                event["new_version"] = False
            else:
                event["version"] = f"v{next_number(versions)}"
                event["new_version"] = True
            write_line(f, jsonl_line(event))
        return event

    def record_synced(self, sha256: str, pending_id: str, comet: dict[str, Any]) -> Event:
        """A pending artifact version reached Comet (`comet` names artifact, version,
        experiment key and aliases)."""
        version = self.version_of(sha256)
        return self.append(
            {
                "event": "comet_synced",
                "sha256": sha256,
                "version": version,
                "pending_id": pending_id,
                "comet": comet,
            }
        )

    def record_consume_synced(
        self, sha256: str, pending_id: str, comet: dict[str, Any], consumer: dict[str, Any]
    ) -> Event:
        """An offline consumer was recorded as a consumer in Comet later."""
        return self.append(
            {
                "event": "consume_synced",
                "sha256": sha256,
                "pending_id": pending_id,
                "comet": comet,
                "consumer": consumer,
            }
        )

    def record_consumed(
        self,
        sha256: str,
        version: str | None,
        reference: str,
        consumer: dict[str, Any],
        comet: dict[str, Any],
        metrics: dict[str, Any],
    ) -> Event:
        """A downstream run used a snapshot (`version` None: the ledger's number of it)."""
        return self.append(
            {
                "event": "consumed",
                "sha256": sha256,
                "version": version or self.version_of(sha256),
                "reference": reference,
                "consumer": consumer,
                "comet": comet,
                "metrics": metrics,
            }
        )

    # --- questions -------------------------------------------------------------------
    def upcoming_version(self) -> str:
        """The number the next new snapshot gets (stable while the caller holds the
        versioning lock: only the versioning step makes versions)."""
        return f"v{next_number(numbering(self.events(), str(self.path)))}"

    def version_of(self, sha256: str) -> str | None:
        return numbering(self.events(), str(self.path)).get(sha256)

    def latest_produced(self) -> Event | None:
        produced = [e for e in self.events() if e.get("event") == "produced"]
        return produced[-1] if produced else None

    def resolve(self, ref: str = "latest") -> dict[str, Any]:
        """The version view for `latest`, `vN`, a sha256 (prefix ≥ 7) or a Comet version."""
        views = self.graph()
        if not views:
            raise LineageError(f"the ledger {self.path} has no snapshot versions yet")
        return pick(views, ref, str(self.path))

    def graph(self) -> list[dict[str, Any]]:
        """One view per snapshot version: sources, params, model, commit, producing runs,
        DVC and Comet versions, and consumers."""
        return build_graph(self.events(), str(self.path))

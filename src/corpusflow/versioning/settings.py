"""Comet settings: the `comet:` section of params.yaml resolved against the environment.

Every versioning module takes these (or the Params they come from), never a pipeline
object. The API key is only looked at (is one set?), never read into a value here: the
SDK reads it from its own configuration.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from corpusflow.config import DEFAULT_COMET_PROJECT, Comet
from corpusflow.versioning.ledger import Ledger

if TYPE_CHECKING:
    from corpusflow.config import Params

LOG = logging.getLogger(__name__)
DEFAULT_ARTIFACT: str = Comet.model_fields["artifact"].default
SNAPSHOT_FILE = "snapshot.json"  # logical path of the snapshot inside the artifact version
DEFAULT_DOWNLOADS = Path(Comet.model_fields["offline_dir"].default) / "downloads"


class CometError(Exception):
    """A Comet operation the user asked for cannot be done (e.g. sync without a key)."""


@dataclass(frozen=True)
class CometSettings:
    """The `comet:` section resolved against the environment."""

    mode: str  # online | offline | disabled (what this run will do)
    project: str
    workspace: str | None
    artifact: str
    artifact_type: str
    offline_dir: Path
    ledger_path: Path

    @classmethod
    def from_params(cls, params: Params) -> CometSettings:
        c = params.comet
        has_key = bool(os.environ.get("COMET_API_KEY"))
        mode = c.mode
        if mode == "auto":
            mode = "online" if has_key else "offline"
        elif mode == "online" and not has_key:
            LOG.warning("comet.mode is online but COMET_API_KEY is not set: working offline")
            mode = "offline"
        return cls(
            mode=mode,
            project=os.environ.get("COMET_PROJECT_NAME") or c.project or DEFAULT_COMET_PROJECT,
            workspace=os.environ.get("COMET_WORKSPACE") or c.workspace or None,
            artifact=c.artifact,
            artifact_type=c.artifact_type,
            offline_dir=Path(c.offline_dir),
            ledger_path=Path(c.ledger),
        )

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.ledger_path)

    @property
    def pending_dir(self) -> Path:
        return self.offline_dir / "pending"

    @property
    def uploaded_dir(self) -> Path:
        return self.offline_dir / "uploaded"

    @property
    def fallback_dir(self) -> Path:
        """Archives the SDK wrote when an online run lost its server (uploaded with force)."""
        return self.offline_dir / "fallback"

    @property
    def downloads_dir(self) -> Path:
        """Where snapshots fetched from Comet are put (DEFAULT_DOWNLOADS by default)."""
        return self.offline_dir / DEFAULT_DOWNLOADS.name

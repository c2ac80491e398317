"""Settings: pipeline parameters from params.yaml, endpoints and secrets from the environment.

params.yaml holds only what may be versioned and logged; secrets (MILVUS_TOKEN,
OPENAI_API_KEY, COMET_API_KEY) are read from the environment and never stored here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from fnmatch import fnmatch
from pathlib import Path, PurePath
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from corpusflow.ids import PROJECT_MARKER, hash_value, set_project_root

DEFAULT_PARAMS_FILE = PROJECT_MARKER  # params.yaml also marks the project root (ids.py)
LOCAL_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_COMET_PROJECT = "corpusflow"  # when neither COMET_PROJECT_NAME nor comet.project


class ConfigError(Exception):
    """A user error in configuration: reported as one line, never a traceback."""


class _Section(BaseModel):
    # strict: YAML `true` is not the integer 1, `2.5` is not a count; unknown keys are typos
    model_config = ConfigDict(extra="forbid", strict=True)


class Columns(_Section):
    """CSV column names; null means auto-detect."""

    id: str | None = None
    title: str | None = None
    author: str | None = None
    url: str | None = None
    text: str | None = None
    published: str | None = None


class Sources(_Section):
    transcripts: list[str] = Field(default_factory=list)
    articles: list[str] = Field(default_factory=list)
    youtube: list[str] = Field(default_factory=list)
    youtube_languages: list[str] = Field(default_factory=lambda: ["en"])
    columns: Columns = Field(default_factory=Columns)
    # file name or glob -> the columns of the CSVs it matches (first match wins; it replaces
    # `columns` for those files, fields it leaves out are auto-detected)
    columns_by_file: dict[str, Columns] = Field(default_factory=dict)


class ChosenSources(NamedTuple):
    """The inputs of one ingest, and whether they came from params.yaml."""

    transcripts: list[str]
    articles: list[str]
    youtube: list[str]
    from_params: bool


def chosen_sources(
    sources: Sources,
    transcripts: list[str] | None = None,
    articles: list[str] | None = None,
    youtube: list[str] | None = None,
    *,
    option_prefix: str = "",
) -> ChosenSources:
    """The inputs named (command-line options, flow parameters), else params.yaml's
    `sources`: one rule for the CLI and the flows. ConfigError when neither names any
    (`option_prefix` "--" names them as the CLI's options in that message)."""
    named = (transcripts or [], articles or [], youtube or [])
    from_params = not any(named)
    if from_params:
        named = (sources.transcripts, sources.articles, sources.youtube)
    if not any(named):
        p = option_prefix
        raise ConfigError(
            f"nothing to ingest: give {p}transcripts, {p}articles or {p}youtube "
            "(or sources in params.yaml)"
        )
    return ChosenSources(*(list(n) for n in named), from_params=from_params)


def columns_for(path: str | Path, default: Columns, by_file: Mapping[str, Columns]) -> Columns:
    """The columns of one CSV: those of the first `by_file` pattern matching its path (from
    the right, as `Path.match`: "*.csv", "news/*.csv") or its name; else `default`."""
    pure = PurePath(path)
    for pattern, columns in by_file.items():
        if pure.match(pattern) or fnmatch(pure.name, pattern):
            return columns
    return default


class Chunking(_Section):
    mode: Literal["tokens", "characters"] = "tokens"
    # tokens mode: None = the embedding model's own input limit; characters mode: None = 1000.
    chunk_size: int | None = Field(default=None, gt=0)
    chunk_overlap: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Chunking:
        if self.chunk_size and self.chunk_overlap and self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class Embedding(_Section):
    provider: Literal["local", "openai"] = "local"
    model: str = LOCAL_MODEL_ID
    # local model: texts per forward pass; null = the device's default (8 on the CPU)
    batch_size: int | None = Field(default=None, gt=0)
    # local model: auto = CUDA when torch sees a GPU, else cpu (see embedding/device.py)
    device: str = "auto"
    dimensions: int | None = Field(default=None, gt=0)
    # openai-compatible endpoint settings (the key comes from OPENAI_API_KEY only)
    base_url: str | None = None
    max_concurrency: int = Field(default=4, gt=0)
    max_retries: int = Field(default=6, ge=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    price_per_million_tokens: float | None = Field(default=None, ge=0)
    # per-request limits (OpenAI's by default; lower them for servers with smaller ones)
    max_batch_inputs: int = Field(default=2048, gt=0)
    max_batch_tokens: int = Field(default=300_000, gt=0)
    max_input_tokens: int = Field(default=8192, gt=0)
    request_timeout: float = Field(default=60.0, gt=0)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not DEVICE.fullmatch(value):
            raise ValueError(f"{value!r} is not a device: auto, cpu, cuda, cuda:N or mps")
        return value


# Dense float vector index types of Milvus 2.x servers and Milvus Lite (BRUTE_FORCE).
VECTOR_INDEX_TYPES = frozenset(
    "AUTOINDEX FLAT BRUTE_FORCE IVF_FLAT IVF_SQ8 IVF_PQ IVF_RABITQ HNSW HNSW_SQ HNSW_PQ "
    "HNSW_PRQ SCANN DISKANN GPU_CAGRA GPU_IVF_FLAT GPU_IVF_PQ GPU_BRUTE_FORCE".split()
)


class Index(_Section):
    type: str = "HNSW"
    params: dict[str, Any] = Field(default_factory=lambda: {"M": 16, "efConstruction": 200})
    search_params: dict[str, Any] = Field(default_factory=lambda: {"ef": 64})

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value.upper() not in VECTOR_INDEX_TYPES:
            known = ", ".join(sorted(VECTOR_INDEX_TYPES))
            raise ValueError(f"{value!r} is not a Milvus vector index type (one of {known})")
        return value


class Milvus(_Section):
    uri: str = "data/milvus.db"
    collection: str = Field(default="corpusflow", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
    index: Index = Field(default_factory=Index)
    batch_size: int = Field(default=500, gt=0)


class Ingest(_Section):
    cleanup: Literal["incremental", "full"] = "incremental"
    batch_documents: int = Field(default=64, gt=0)
    rejects: str = "data/rejects.jsonl"
    cache: str = "data/embedding-cache.sqlite"
    state: str = "data/state.sqlite"  # what is stored where, checked against Milvus each run
    # overlap the stages: the next batch is parsed and chunked and the previous one written
    # while the model embeds (runner.py); false runs them one after another, same result
    pipelined: bool = True
    # transcript files parsed ahead in worker processes (sources/reader.py) when there are
    # many; 0 parses them in the run's own process; unset: one per core, at most 4
    parse_workers: int | None = Field(default=None, ge=0)


class SnapshotQuery(_Section):
    """A named query: a Milvus filter expression, or a semantic query with top_k (or both)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    filter: str | None = None
    query: str | None = None
    top_k: int = Field(default=5, gt=0)

    @model_validator(mode="after")
    def _has_something(self) -> SnapshotQuery:
        if not self.filter and not self.query:
            raise ValueError(f"snapshot query {self.name!r} needs a filter or a query")
        return self


class Snapshot(_Section):
    out: str = "data/snapshots/snapshot.json"
    include_all: bool = True
    queries: list[SnapshotQuery] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Snapshot:
        names = [q.name for q in self.queries]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"snapshot query names must be unique; repeated: {', '.join(dupes)}")
        return self


class Comet(_Section):
    """Comet tracking and the local lineage ledger. The API key is never here: with
    COMET_API_KEY set, `auto` goes online; without it, runs land in offline archives and a
    pending queue that `corpusflow comet sync` uploads later."""

    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str | None = None  # COMET_PROJECT_NAME overrides; default DEFAULT_COMET_PROJECT
    workspace: str | None = None  # COMET_WORKSPACE overrides; default: the key's own
    artifact: str = Field(default="milvus-query-results", pattern=r"^[A-Za-z0-9_.-]+$")
    artifact_type: str = "dataset"
    offline_dir: str = "data/comet"  # offline archives; pending artifact versions below it
    ledger: str = "lineage/ledger.jsonl"  # append-only lineage, kept in git


class EvaluationQuery(_Section):
    query: str = Field(min_length=1)
    expected_source: str = Field(min_length=1)  # a source_id, e.g. youtube:<id>


class Evaluation(_Section):
    """Retrieval evaluation of a snapshot: hit rate and MRR of the expected source at k."""

    k: int = Field(default=5, gt=0)
    snapshot: str = "latest"  # version (v2), sha256 prefix, Comet version or alias
    queries: list[EvaluationQuery] = Field(default_factory=list)


class Params(_Section):
    """Everything in params.yaml. Unknown keys are errors, so typos don't pass silently."""

    sources: Sources = Field(default_factory=Sources)
    chunking: Chunking = Field(default_factory=Chunking)
    embedding: Embedding = Field(default_factory=Embedding)
    milvus: Milvus = Field(default_factory=Milvus)
    ingest: Ingest = Field(default_factory=Ingest)
    snapshot: Snapshot = Field(default_factory=Snapshot)
    comet: Comet = Field(default_factory=Comet)
    evaluation: Evaluation = Field(default_factory=Evaluation)

    def digest(self) -> str:
        """Hash of the settings that shape the data (Comet and evaluation settings don't)."""
        return hash_value(self.model_dump(mode="json", exclude={"comet", "evaluation"}))


class Env(BaseModel):
    """Endpoints and secrets from the environment; secrets are never dumped or logged."""

    model_config = ConfigDict(frozen=True)

    milvus_uri: str | None = None
    milvus_token: str | None = Field(default=None, repr=False)
    openai_base_url: str | None = None
    openai_api_key: str | None = Field(default=None, repr=False)

    @classmethod
    def from_environ(cls) -> Env:
        get = os.environ.get
        return cls(
            milvus_uri=get("MILVUS_URI") or None,
            milvus_token=get("MILVUS_TOKEN") or None,
            openai_base_url=get("OPENAI_BASE_URL") or None,
            openai_api_key=get("OPENAI_API_KEY") or None,
        )


def load_params(path: str | Path | None = None) -> Params:
    """Read params.yaml (or `path`); with no file in the current directory, use defaults."""
    explicit = path is not None
    file = Path(path) if explicit else Path(DEFAULT_PARAMS_FILE)
    if not file.exists():
        if explicit:
            raise ConfigError(f"params file not found: {file}")
        return Params()
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} must be a mapping of sections")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{file}: {where}: {message}") from None
    set_project_root(file.resolve().parent)  # file and CSV ids are relative to it
    return params

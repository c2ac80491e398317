"""What every `corpusflow` command shares (cli.py, stages.py, versioning/comet_cli.py):
the common options, and user errors as one `error: ...` line with exit code 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

ParamsOpt = Annotated[
    str | None, typer.Option("--params", help="params file (default: ./params.yaml if present)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]


def fail(message: str, code: int = 2) -> NoReturn:
    from corpusflow.redact import redact

    typer.echo(f"error: {redact(message)}", err=True)
    raise typer.Exit(code)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user must act (config, Milvus, endpoint, lineage, disk)."""
    from corpusflow.config import ConfigError
    from corpusflow.embedding.base import EmbeddingError
    from corpusflow.pipeline import PipelineError
    from corpusflow.store import StoreError
    from corpusflow.versioning.comet import CometError
    from corpusflow.versioning.lineage import LineageError

    return (ConfigError, PipelineError, StoreError, EmbeddingError, LineageError, CometError)


@contextmanager
def command_context(params_file: str | None, with_context: bool = True) -> Iterator[Any]:
    """Params (and a pipeline Context, closed afterwards), with user errors as one line."""
    from corpusflow.config import load_params
    from corpusflow.pipeline import Context

    ctx = None
    try:
        params = load_params(params_file)
        if not with_context:
            yield params
            return
        ctx = Context(params)
        yield ctx
    except user_errors() as exc:
        fail(str(exc))
    except OSError as exc:  # e.g. a snapshot that cannot be written (disk full)
        fail(str(exc))
    except Exception as exc:  # Milvus errors surface as library exceptions: keep them one line
        if type(exc).__module__.startswith("pymilvus"):
            fail(f"Milvus: {str(exc).strip().splitlines()[0]}")
        raise
    finally:
        if ctx is not None:
            ctx.close()


@contextmanager
def errors_as_lines() -> Iterator[None]:
    """User errors raised inside the block as one line on stderr, exit code 2."""
    try:
        yield
    except user_errors() as exc:
        fail(str(exc))

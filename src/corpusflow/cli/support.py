"""What every `corpusflow` command shares: the common options, and user errors as one
`error: ...` line with exit code 2 (usage errors too, through `run_app`)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from corpusflow.config import Params

ParamsOpt = Annotated[
    str | None,
    typer.Option(
        "--params", metavar="FILE", help="params file (default: ./params.yaml if present)"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]


def emit(result: Any, as_json: bool, human: Callable[[], None]) -> None:
    """A command's result: canonical JSON with --json, else its human lines."""
    if as_json:
        typer.echo(json.dumps(result, sort_keys=True))
    else:
        human()


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
        fail(one_line(str(exc)))
    except OSError as exc:  # e.g. a snapshot that cannot be written (disk full)
        fail(one_line(str(exc)))
    except Exception as exc:  # Milvus errors surface as library exceptions: keep them one line
        if type(exc).__module__.startswith("pymilvus"):
            fail(f"Milvus: {one_line(str(exc))}")
        raise
    finally:
        if ctx is not None:
            ctx.close()


def require_paths(named: dict[str, Sequence[str]], where: str = "") -> None:
    """A path the user named (an option, or params.yaml's `sources:`) that does not exist is
    a typo, not a reject: one line, exit 2, before any work. `where` prefixes the message,
    e.g. "params.yaml: sources."."""
    for option, paths in named.items():
        for path in paths:
            if not os.path.lexists(path):
                fail(f"{where}{option}: {path}: no such file or directory")


def params_or_fail(path: str | None) -> Params:
    """The params file, or its problem as one line and exit 2 (for the commands that need
    no pipeline Context, such as `comet status` and `lineage`)."""
    from corpusflow.config import ConfigError, load_params

    try:
        return load_params(path)
    except ConfigError as exc:
        fail(str(exc))


@contextmanager
def errors_as_lines() -> Iterator[None]:
    """User errors raised inside the block as one line on stderr, exit code 2."""
    try:
        yield
    except user_errors() as exc:
        fail(one_line(str(exc)))


# ----------------------------------------------------------------------------------------
# running the app: readable help, usage errors as one line
# ----------------------------------------------------------------------------------------
def _label(param: Any) -> None:
    """One parameter's help label: nothing for a flag, `[a|b]` for choices, a NAME else."""
    if getattr(param, "is_flag", False):
        param.metavar = ""
        return
    if param.param_type_name == "argument":
        param.metavar = param.metavar or param.name.upper()
        param.display_type_rich = lambda ctx: None  # the name column already says it
        return
    if param.metavar is None:
        desc = param.type_descriptor
        choices = desc.choices if desc.is_choice else None
        param.metavar = f"[{'|'.join(map(str, choices))}]" if choices else param.name.upper()


def readable_help(command: Any) -> None:
    """Typer 0.29 labels every parameter in `--help` with its Python type (`<bool>` even on
    `--help`, `<list[str]>`); label them as Click and argparse tools do instead."""
    params = list(command.params)
    help_option = command.get_help_option(typer.Context(command))
    if help_option is not None:
        params.append(help_option)
    for param in params:
        _label(param)
    for sub in getattr(command, "commands", {}).values():
        readable_help(sub)


def run_app(app: typer.Typer, args: list[str] | None = None) -> int:
    """Run the app and return its exit code; a usage error (unknown option, a value out of
    range, a missing argument) is one `error: ...` line with exit code 2, not a usage box."""
    # The embedded Milvus Lite server logs a traceback for every request it fails (thousands
    # of lines for a deeply nested filter); the client gets the same error as an exception,
    # which the commands report in one line.
    logging.getLogger("milvus_lite.adapter.grpc.servicer").setLevel(logging.CRITICAL)
    command = typer.main.get_command(app)
    readable_help(command)
    try:
        result = command.main(args=args, prog_name="corpusflow", standalone_mode=False)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already on screen
            return 2
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {one_line(message)}{hint}", err=True)
        return int(getattr(exc, "exit_code", 2))
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    return result if isinstance(result, int) else 0


_WRAPPED = re.compile(r"<\w*(?:Exception|Error): \(code=[^,]*, message=(.*?)\)>", re.S)


def one_line(text: str) -> str:
    """The first line of a message, with pymilvus' `<MilvusException: (code=2,
    message=...)>` wrapping reduced to its message."""
    text = _WRAPPED.sub(lambda m: m.group(1), str(text)).strip()
    return text.splitlines()[0].strip() if text else ""

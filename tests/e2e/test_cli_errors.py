"""The CLI's first contact: help that reads like Click/argparse tools, --version, and user
errors (usage mistakes, typos in paths, a wrong MILVUS_URI) as one line with exit code 2.

None of these needs the model or an ingested collection, so they stay fast."""

from __future__ import annotations

import os
import subprocess
from importlib.metadata import version
from pathlib import Path

from conftest import CLI

PYTHON_TYPES = ("<bool>", "<str>", "<int", "<list[", "<float>", "<Path>")


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, env=full)


def one_error_line(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr and "╭" not in out.stderr and out.stdout == ""
    return lines[0]


def every_command_path() -> list[list[str]]:
    """The path to every command and group of the app: [], ["ingest"], ["comet", "sync"], ..."""
    import typer

    from corpusflow.cli import app

    paths: list[list[str]] = []

    def walk(command, prefix: list[str]) -> None:
        paths.append(prefix)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_help_shows_no_python_types_anywhere(capsys, monkeypatch):
    from corpusflow.cli import app
    from corpusflow.cli.support import run_app  # the entry point's runner, in process

    monkeypatch.setenv("COLUMNS", "200")
    paths = every_command_path()
    assert ["ingest"] in paths and ["comet", "sync"] in paths and ["stage", "extract"] in paths
    for path in paths:
        assert run_app(app, [*path, "--help"]) == 0
        text = capsys.readouterr().out
        assert "Usage:" in text, path
        found = [t for t in PYTHON_TYPES if t in text]
        assert not found, (path, found, text)


def test_help_lists_cleanup_choices_and_describes_top_k(tmp_path):
    ingest = cli(tmp_path, "ingest", "--help").stdout
    assert "[incremental|full]" in ingest
    search = cli(tmp_path, "search", "--help").stdout
    k_line = next(line for line in search.splitlines() if "--top-k" in line)
    assert "hits to return" in k_line
    assert "--help" in search and "<bool>" not in search


def test_version_prints_the_installed_version(tmp_path):
    out = cli(tmp_path, "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"corpusflow {version('corpusflow')}"


def test_usage_errors_are_one_line_not_a_usage_box(tmp_path):
    line = one_error_line(cli(tmp_path, "search", "anything", "-k", "0"))
    assert "-k" in line and "corpusflow search --help" in line
    line = one_error_line(cli(tmp_path, "ingest", "--cleanup", "nope"))
    assert "'incremental'" in line and "'full'" in line
    assert "--frobnicate" in one_error_line(cli(tmp_path, "stats", "--frobnicate"))
    assert "QUERY" in one_error_line(cli(tmp_path, "search"))


def test_a_named_path_that_does_not_exist_is_a_user_error(tmp_path):
    (tmp_path / "real.txt").write_text("A real transcript about tomatoes.")
    line = one_error_line(
        cli(tmp_path, "ingest", "--transcripts", "real.txt", "--transcripts", "/nope/x.vtt")
    )
    assert line == "error: --transcripts: /nope/x.vtt: no such file or directory"
    line = one_error_line(cli(tmp_path, "ingest", "--articles", "typo.csv"))
    assert "--articles: typo.csv" in line
    assert not (tmp_path / "data").exists()  # stopped before opening Milvus or the rejects


def test_a_params_path_that_does_not_exist_is_a_user_error(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "sources:\n  transcripts: [data/raw/transcripts]\n  articles: [data/raw/nope.csv]\n"
    )
    (tmp_path / "data" / "raw" / "transcripts").mkdir(parents=True)
    line = one_error_line(cli(tmp_path, "ingest"))
    assert (
        line == "error: params.yaml: sources.articles: data/raw/nope.csv: no such file or directory"
    )
    assert not (tmp_path / "data" / "milvus.db").exists()


def test_a_wrong_milvus_uri_is_a_plain_sentence(tmp_path):
    for uri in ("http://127.0.0.1:1", "foo://bar"):
        line = one_error_line(cli(tmp_path, "stats", env={"MILVUS_URI": uri}))
        assert f"cannot open Milvus at {uri}: " in line
        assert "Exception" not in line and "code=" not in line and "<" not in line, line

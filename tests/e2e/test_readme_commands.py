"""Every command the README shows, pasted in order into one fresh shell after `make run`
(issue #19, acceptance 2).

The commands are read from the README's shell code blocks (``` and ```bash; ```text blocks
are synopses), in order. Each is either run, or listed in NOT_RUN with the reason (a server,
the network, a long-running process, or the test suite itself), or in ADAPTED with what runs
instead and why. A command the README gains that is in none of these runs by default, so
a new example is tested the day it is written.

The shell is `bash --noprofile --norc` with PATH=/usr/bin:/bin (nothing from the venv), a
private HOME (DVC remote, Comet, caches) and the repository's tracked files in a temporary git
repository whose .venv links to this worktree's installed one, with a fresh install stamp (so
`make run` finds it installed, as after a first `make run`, and never reinstalls). The
history has three empty commits on top of the tracked files, as a clone has history, so
`--rev HEAD~3` names the tracked state.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from conftest import REPO

PROGRAMS = {"make", "source", "corpusflow", "dvc", "prefect", "milvus-lite", "export"}
PATHS = (".venv/bin/", "../shared/tools/")
SERVER = "needs a Milvus server at a placeholder host (network)"
PREFECT = (
    "starts a Prefect server and worker (ports, ~1 min); tests/e2e/test_prefect_e2e.py runs it"
)
NOT_RUN = {
    "make test": "the test suite itself (~8 min): not a step to repeat inside one of its tests",
    "MILVUS_URI=http://milvus.example:19530 MILVUS_TOKEN=root:Milvus corpusflow ingest": SERVER,
    "prefect server start": PREFECT,
    "prefect work-pool create local --type process": PREFECT,
    "prefect deploy --all": PREFECT,
    "prefect worker start --pool local": PREFECT,
    "prefect deployment run 'ingest/local' --watch": PREFECT,
    "prefect deployment run 'watch/local'": PREFECT,
    "prefect deployment run 'ingest/local' -p cleanup=full -p "
    "'transcripts=[\"data/raw/transcripts\"]' --watch": PREFECT,
    "prefect deployment run 'evaluate/local' -p snapshot=latest --watch": PREFECT,
}
ADAPTED = {
    # after `make run` there is one version: every snapshot above has the same bytes
    "corpusflow lineage v2 --json": ["corpusflow lineage v1 --json"],
}


def readme_commands(text: str) -> list[str]:
    """Command lines of the README's shell blocks, as written, comments removed, in order."""
    commands, fence = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        if fence not in ("", "bash", "sh", "shell"):
            continue
        command = re.sub(r"\s{2,}#.*$", "", line).strip()  # the README's comments: "  # ..."
        words = command.split()
        program = _program(words) if words else ""
        if program in PROGRAMS or program.startswith(PATHS):
            commands.append(command)
    return commands


def _program(words: list[str]) -> str:
    """The program a command line runs, past VAR=value assignments."""
    rest = [w for w in words if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
    return rest[0] if rest else words[0]


def fresh_repo(root: Path) -> Path:
    repo = root / "repo"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)  # mtimes kept: make sees .venv up to date
    venv = repo / ".venv"  # this worktree's installed venv, seen through links
    venv.mkdir()
    for part in (REPO / ".venv").iterdir():
        if part.name != ".installed-stamp":
            (venv / part.name).symlink_to(part)
    (venv / ".installed-stamp").touch()  # installed: as after a first `make run`
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "tracked files"], cwd=repo, check=True)
    for i in range(3):
        subprocess.run(
            [*git, "commit", "-q", "--allow-empty", "-m", f"later {i}"], cwd=repo, check=True
        )
    return repo


def test_every_readme_command_works_pasted_in_order_after_make_run(tmp_path):
    text = (REPO / "README.md").read_text()
    commands = readme_commands(text)
    assert commands[0] == "make run" and "source .venv/bin/activate" in commands
    assert set(NOT_RUN) <= set(commands), set(NOT_RUN) - set(commands)  # no stale entries
    assert set(ADAPTED) <= set(commands), set(ADAPTED) - set(commands)
    repo = fresh_repo(tmp_path)
    up_to_date = subprocess.run(["make", "-q", "install"], cwd=repo, capture_output=True)
    assert up_to_date.returncode == 0  # never reinstall into the shared venv from here
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb"}
    env.update({k: os.environ[k] for k in ("CI",) if k in os.environ})
    script, ran = ["set -e"], []
    for command in commands:
        if command in NOT_RUN:
            continue
        for line in ADAPTED.get(command, [command]):
            script += [f"echo {shlex.quote('+ ' + line)} >&2", line]
            ran.append(line)
    out = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", "\n".join(script)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    last = [line for line in out.stderr.splitlines() if line.startswith("+ ")][-1:]
    assert out.returncode == 0, f"failed at {last}: {out.stderr[-3000:]}"
    assert len(ran) >= 15 and "make dvc-repro" in ran and "dvc dag" in ran
    assert "Traceback" not in out.stderr
    assert f"corpusflow {_version()}" in out.stdout  # `corpusflow --version`, from PATH
    assert "Keeping a Sourdough Starter Alive" in out.stdout  # make run's search
    assert (repo / "old.json").is_file()  # snapshot show --rev HEAD~3 -o old.json


def _version() -> str:
    from importlib.metadata import version

    return version("corpusflow")

"""Snapshot files are written safely: never through a symlink or over a device node or FIFO
(refused, one line), with the mode the umask allows (not 0600), and no temporary file
outliving a killed writer. Real files, mknod (as root), kill -9, the `corpusflow` CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import CLI
from corpusflow.snapshot import write_snapshot
from test_faults import assert_one_line_error, wait_for

TIMEOUT = 120.0


# ------------------------------------------------------------------------------------------
# the targets: never replaced when not a regular file; the umask's mode
# ------------------------------------------------------------------------------------------
def _write(path: Path) -> None:
    write_snapshot(path, {"collection": "c"}, iter([{"id": "a"}]), {}, {})


def test_a_symlinked_snapshot_is_one_line_through_the_cli(tmp_path):
    """End to end: `corpusflow snapshot` with snapshot.out a symlink exits 2, one line."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("Glaciers carve fjords slowly.")
    (tmp_path / "params.yaml").write_text(
        "sources: {transcripts: [corpus]}\ncomet: {mode: disabled}\n"
    )
    run = lambda *a: subprocess.run(  # noqa: E731
        [CLI, *a], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert run("ingest").returncode == 0
    snaps = tmp_path / "data" / "snapshots"
    snaps.mkdir(parents=True)
    (tmp_path / "mine.json").write_text("mine")
    (snaps / "snapshot.json").symlink_to(tmp_path / "mine.json")
    assert_one_line_error(run("snapshot", "--no-version"), "is a symlink, not a regular file")
    assert (tmp_path / "mine.json").read_text() == "mine"
    assert (snaps / "snapshot.json").is_symlink()


# ------------------------------------------------------------------------------------------
# kill -9 mid-write: the next write leaves no temporary file behind
# ------------------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from corpusflow.snapshot import write_snapshot

    out, marker, run_size = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])

    class Stuck(dict):
        def items(self):  # json.dumps calls this for a dict subclass: hang mid-write
            marker.touch()
            threading.Event().wait()

    def records():
        for i in range(40):
            yield {"id": f"{i:03d}", "text": "x"}
        marker.touch()  # all read, runs spilled: hang before the snapshot is written
        threading.Event().wait()
        yield {}

    if run_size < 40:
        write_snapshot(out, {"collection": "c"}, records(), {}, {}, run_size=run_size)
    else:
        write_snapshot(out, {"collection": "c"}, iter([Stuck(id="a")]), {}, {})
    """
)


@pytest.mark.parametrize("run_size", [1000, 8], ids=["writing-the-file", "spilling-runs"])
def test_temporary_files_a_killed_writer_left_are_removed_by_the_next_write(tmp_path, run_size):
    out, marker = tmp_path / "snaps" / "s.json", tmp_path / "marker"
    _write(out)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(marker), str(run_size)])
    try:
        wait_for(marker.exists, proc, "the writer reaching the point of the kill")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    assert left, "the kill left no temporary file: the test would prove nothing"
    _write(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.json", "s.manifest.json"]
    assert json.loads(out.read_text())["count"] == 1

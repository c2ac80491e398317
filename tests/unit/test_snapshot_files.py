"""Snapshot files are written safely: never through a symlink or over a device node or FIFO
(refused, left as they are), with the mode the umask allows (not 0600). Real files, mknod
(as root). (Through the CLI, and a killed writer: tests/e2e/test_reliability_files.py.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corpusflow.snapshot import SnapshotError, manifest_path, write_snapshot


# ------------------------------------------------------------------------------------------
# the targets: never replaced when not a regular file; the umask's mode
# ------------------------------------------------------------------------------------------
def _write(path: Path) -> None:
    write_snapshot(path, {"collection": "c"}, iter([{"id": "a"}]), {}, {})


@pytest.mark.parametrize("which", ["snapshot", "manifest"])
@pytest.mark.parametrize("kind", ["symlink", "device", "fifo"])
def test_a_target_that_is_not_a_regular_file_is_refused_and_left_as_it_is(tmp_path, kind, which):
    path = tmp_path / "snap.json"
    target = path if which == "snapshot" else manifest_path(path)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("precious")
    if kind == "symlink":
        target.symlink_to(elsewhere)
    elif kind == "device":
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # like /dev/null
    else:
        os.mkfifo(target)
    before = os.lstat(target)
    with pytest.raises(SnapshotError, match=f"{target.name} is a .*not a regular file"):
        _write(path)
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (
        before.st_mode,
        before.st_ino,
        before.st_rdev,
    )
    assert elsewhere.read_text() == "precious"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_snapshot_and_manifest_get_the_mode_the_umask_allows(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _write(tmp_path / "s.json")
    finally:
        os.umask(old)
    for name in ("s.json", "s.manifest.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name

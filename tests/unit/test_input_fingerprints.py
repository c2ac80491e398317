"""Input fingerprints (inputs.Fingerprints): a file's fingerprint changes when a sidecar that
could belong to it changes (any *.info.json / *.meta.json beside it sharing its name up to
the first dot), and only then; the same in a folder of thousands of files, where every
sidecar is looked up by bisection instead of being tested for every file."""

from __future__ import annotations

import os

from corpusflow.inputs import Fingerprints


def touch(path, text: str = "{}") -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def fingerprints(folder) -> dict[str, str]:
    fp = Fingerprints({})  # a new run: the folder is listed again
    return {p.name: fp.of(p) for p in sorted(folder.glob("*.vtt"))}


def test_a_fingerprint_follows_exactly_the_sidecars_sharing_its_prefix(tmp_path):
    for name in ("talk-1", "talk-10", "talk-2", "other"):
        (tmp_path / f"{name}.en.vtt").write_text("WEBVTT\n")
        (tmp_path / f"{name}.info.json").write_text("{}")
    (tmp_path / "talk-1.notes.txt").write_text("not a sidecar")
    before = fingerprints(tmp_path)
    assert len(set(before.values())) == 4

    touch(tmp_path / "talk-10.info.json")  # "talk-10" starts with "talk-1": both change
    after = fingerprints(tmp_path)
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {"talk-1.en.vtt", "talk-10.en.vtt"}

    touch(tmp_path / "talk-1.notes.txt", "still not a sidecar")
    (tmp_path / "talk-2.meta.json").write_text("{}")  # a new sidecar counts too
    again = fingerprints(tmp_path)
    assert {n for n in after if after[n] != again[n]} == {"talk-2.en.vtt"}


def test_in_a_large_folder_every_file_sees_its_own_sidecars(tmp_path):
    names = [f"v{i:05d}" for i in range(3000)]
    for name in names:
        (tmp_path / f"{name}.en.vtt").write_text("WEBVTT\n")
        (tmp_path / f"{name}.info.json").write_text("{}")
    before = fingerprints(tmp_path)
    for name in names[::500]:
        touch(tmp_path / f"{name}.info.json")
    after = fingerprints(tmp_path)
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {f"{name}.en.vtt" for name in names[::500]}

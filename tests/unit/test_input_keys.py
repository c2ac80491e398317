"""An input's key is its resolved path however it was typed: the folder is resolved once
per run and the file itself only when it is a symlink (ids.input_key)."""

from __future__ import annotations

import os
from pathlib import Path

from corpusflow.ids import forget_resolved_paths, input_key


def _tree(tmp_path: Path) -> Path:
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "a.vtt").write_text("x", encoding="utf-8")
    (real / "b.vtt").write_text("x", encoding="utf-8")
    (tmp_path / "folder-link").symlink_to(real)  # a symlinked folder
    (real / "file-link.vtt").symlink_to(real / "sub" / "a.vtt")  # a symlinked file
    (real / "chain.vtt").symlink_to(real / "file-link.vtt")  # a link to a link
    (real / "dangling.vtt").symlink_to(real / "gone.vtt")
    return real


def test_every_spelling_of_a_file_gives_its_resolved_path(tmp_path, monkeypatch):
    real = _tree(tmp_path)
    monkeypatch.chdir(real / "sub")
    forget_resolved_paths()
    spellings = {
        real / "sub" / "a.vtt": [
            "a.vtt", "./a.vtt", "../sub/a.vtt", str(tmp_path / "folder-link" / "sub" / "a.vtt"),
            "../file-link.vtt", str(tmp_path / "folder-link" / "chain.vtt"),
        ],
        real / "b.vtt": ["../b.vtt", str(tmp_path / "folder-link" / "sub" / ".." / "b.vtt")],
        real / "gone.vtt": ["../dangling.vtt"],
    }  # fmt: skip
    for target, typed in spellings.items():
        for path in typed:
            assert input_key(path) == target.resolve().as_posix(), path
            assert input_key(path) == Path(os.path.abspath(path)).resolve().as_posix()


def test_a_symlink_moved_between_runs_is_followed_afresh(tmp_path):
    real = _tree(tmp_path)
    link = real / "file-link.vtt"
    forget_resolved_paths()
    assert input_key(link) == (real / "sub" / "a.vtt").as_posix()
    link.unlink()
    link.symlink_to(real / "b.vtt")
    forget_resolved_paths()  # what every run does at its start
    assert input_key(link) == (real / "b.vtt").as_posix()
    link.unlink()
    link.write_text("now a file", encoding="utf-8")
    forget_resolved_paths()
    assert input_key(link) == link.as_posix()

"""A re-run with nothing to do must not load the model, import torch or the splitter."""

from __future__ import annotations

import json
import subprocess
import sys

from test_crash import run_ingest, write_corpus

PROBE = """
import json, sys
from corpusflow.cli import app
try:
    app(["ingest", "--json"])
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = [m for m in ("torch", "sentence_transformers", "transformers", "comet_ml", "dvc", "prefect",
                    "langchain_text_splitters")  # nothing is split: no 0.5 s langchain import
         if m in sys.modules]
print(json.dumps({"heavy": heavy}), flush=True)
import os
os._exit(0)  # skip teardown, as corpusflow.cli.main does (apache/arrow#34314)
"""


def test_noop_rerun_does_no_work_and_stays_light(tmp_path):
    write_corpus(tmp_path, n_docs=6)
    first = run_ingest(tmp_path)
    assert first["embedded"] > 0

    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    result, probe = json.loads(lines[0]), json.loads(lines[-1])
    assert (result["embedded"], result["upserted"], result["deleted"]) == (0, 0, 0)
    assert result["skipped"] == first["chunks"]
    assert probe["heavy"] == []  # the model was never loaded

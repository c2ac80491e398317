"""Passwords in endpoint URLs and keys echoed back by a server never reach a printed line.

Real parts: the `corpusflow` CLI, the openai client and httpx (their own INFO log line), a
local OpenAI-compatible server, a Milvus URI where nothing listens.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from conftest import CLI
from milvus_servers import free_port
from openai_stub import Fault, openai_settings, serve
from secret_forms import assert_no_secret
from test_faults import assert_one_line_error

PASSWORD = "PlantedUriPass7731"
KEY = "sk-proj-plantedEchoKey0c9d2e"
TIMEOUT = 180


def write_project(root: Path, embedding: dict | None = None) -> None:
    (root / "corpus").mkdir(parents=True)
    (root / "corpus" / "a.txt").write_text("Glaciers carve fjords over millennia.")
    params: dict = {"sources": {"transcripts": ["corpus"]}, "comet": {"mode": "disabled"}}
    if embedding:
        params["embedding"] = embedding
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_a_password_in_milvus_uri_is_not_in_the_one_line_error(tmp_path):
    write_project(tmp_path)
    port = free_port()  # nothing listens there
    env = dict(os.environ, MILVUS_URI=f"http://root:{PASSWORD}@127.0.0.1:{port}")
    for args in (["stats"], ["ingest"], ["snapshot", "--no-version"]):
        out = subprocess.run(
            [CLI, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert_one_line_error(out, f"127.0.0.1:{port}")
        assert_no_secret(out.stderr + out.stdout, PASSWORD)


DRIVER = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)
    from corpusflow.cli import app
    sys.exit(app(args=sys.argv[1:], standalone_mode=False, prog_name="corpusflow") or 0)
    """
)


def test_a_password_in_openai_base_url_is_not_in_the_http_clients_log_line(tmp_path):
    with serve() as stub:
        url = stub.url.replace("http://", f"http://user:{PASSWORD}@")
        write_project(tmp_path, {"provider": "openai", "model": "m", "dimensions": 16})
        env = dict(os.environ, OPENAI_BASE_URL=url, OPENAI_API_KEY=KEY)
        out = subprocess.run(
            [sys.executable, "-c", DRIVER, "ingest", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        answered = len(stub.answered())
    assert out.returncode == 0, out.stderr[-2000:]
    assert answered >= 1 and "HTTP Request: POST http://" in out.stderr  # the INFO line is there
    assert "/v1/embeddings" in out.stderr
    assert_no_secret(out.stderr + out.stdout, PASSWORD)
    assert_no_secret(out.stderr + out.stdout, KEY)


def test_a_servers_base64_echo_of_the_key_is_redacted(tmp_path):
    echo = base64.b64encode(KEY.encode()).decode()
    shifted = base64.b64encode(b"Bearer " + KEY.encode()).decode()  # another alignment
    body = json.dumps(
        {
            "error": {
                "message": f"Incorrect API key provided: {echo} (header {shifted}, raw {KEY})",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }
    )
    with serve() as stub:
        write_project(tmp_path, openai_settings(stub, model="m", dimensions=16))
        stub.fail_when(lambda inputs: True, Fault.raw(body, status=401))
        env = dict(os.environ, OPENAI_API_KEY=KEY)
        out = subprocess.run(
            [CLI, "ingest"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
    assert_one_line_error(out, "HTTP 401", "Incorrect API key provided", "check OPENAI_API_KEY")
    assert_no_secret(out.stderr, KEY)

"""`redact` removes every secret whatever its base64 alignment, and the user info of any URL.
(Secrets through the CLI, the openai client and servers: tests/e2e/test_reliability_secrets.py.)
"""

from __future__ import annotations

import base64

from corpusflow.redact import redact
from secret_forms import assert_no_secret

PASSWORD = "PlantedUriPass7731"


def test_redact_covers_every_alignment_and_url_user_info(monkeypatch):
    monkeypatch.setenv("MILVUS_TOKEN", f"root:{PASSWORD}")
    for prefix in ("", "u", "us", "Basic "):
        line = "auth " + base64.b64encode((prefix + f"root:{PASSWORD}").encode()).decode()
        assert_no_secret(redact(line), PASSWORD)
    assert redact("s3://me:pw@bucket/x and http://a:b@h:1/v1") == (
        "s3://***@bucket/x and http://***@h:1/v1"
    )
    assert redact("a count of 8192 tokens") == "a count of 8192 tokens"

"""The forms a planted secret could leak in (tests/unit/test_redact.py,
tests/e2e/test_reliability_secrets.py)."""

from __future__ import annotations

import base64


def forms(secret: str) -> list[str]:
    """The secret raw and base64-encoded at each of the three alignments in a longer text."""
    out = [secret]
    for prefix in (b"", b"u", b"us"):
        enc = base64.b64encode(prefix + secret.encode()).decode().rstrip("=")
        out.append(enc[len(prefix) * 2 : len(enc) - 2])  # the part only the secret decides
    return out


def assert_no_secret(text: str, secret: str) -> None:
    for form in forms(secret):
        assert form not in text, f"{form!r} (a form of the secret) leaked:\n{text[-2000:]}"

"""Secrets out of every line we print or log: the one place they are recognised and removed.

A secret is the value of a secret environment variable (OPENAI_API_KEY, MILVUS_TOKEN,
COMET_API_KEY, ...), the password part of a `user:password` token, and the password in the
user info of an endpoint URL (MILVUS_URI, OPENAI_BASE_URL). Each is removed raw and in
base64 (HTTP Basic and gRPC carry credentials base64-encoded, and servers echo them back),
whatever its alignment inside a longer encoded string; user info in any URL is removed too.

`install_log_redaction` makes every log record of the process pass through `redact`
(through the record factory, so it holds for every logger and handler: httpx's INFO line
with the request URL, Prefect's, the libraries'), and the CLI's one-line errors do too.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "***"
SECRET_ENV = (
    "OPENAI_API_KEY",
    "MILVUS_TOKEN",
    "COMET_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "HF_TOKEN",
)
URL_ENV = ("MILVUS_URI", "OPENAI_BASE_URL", "COMET_URL_OVERRIDE")
MIN_SECRET = 6  # shorter values would redact ordinary words
SECRET_KEY = re.compile(
    r"(^|[_.-])(api_?key|access_?key|secret(_?key)?|token|password|passwd|credentials?|auth)$",
    re.IGNORECASE,
)
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_cache: dict[tuple[str, ...], list[str]] = {}


def secret_values(extra: Iterable[str | None] = ()) -> list[str]:
    """The secrets in the environment (plus `extra`), longest first."""
    raw = [os.environ.get(k, "") for k in SECRET_ENV] + [v or "" for v in extra]
    for name in URL_ENV:
        parts = urlsplit(os.environ.get(name, ""))
        if parts.password:
            raw += [parts.password, unquote(parts.password)]
    raw += [v.split(":", 1)[1] for v in raw if ":" in v]  # "user:password" tokens
    return sorted({v for v in raw if len(v) >= MIN_SECRET}, key=len, reverse=True)


def _encoded(secret: str) -> list[str]:
    """The secret's base64 forms: for each of the three alignments in a longer encoded
    string, the run of characters that only its own bytes determine."""
    data = secret.encode("utf-8")
    forms = []
    for offset in range(3):
        full = base64.b64encode(b"\0" * offset + data + b"\0\0")
        first = -(-offset // 3)  # the first 3-byte group lying entirely inside the secret
        last = (offset + len(data)) // 3  # the group after the last one entirely inside
        if last - first >= 2:
            std = full[4 * first : 4 * last].decode()
            forms += [std, std.replace("+", "-").replace("/", "_")]
    return forms


def _needles(extra: tuple[str, ...]) -> list[str]:
    key = (*extra, *(os.environ.get(k, "") for k in SECRET_ENV + URL_ENV))
    if key not in _cache:
        values = secret_values(extra)
        needles = values + [form for v in values for form in _encoded(v)]
        _cache.clear()
        _cache[key] = sorted(set(needles), key=len, reverse=True)
    return _cache[key]


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """`text` without any secret (raw or base64) and without user info in URLs."""
    for needle in _needles(tuple(v for v in extra if v)):
        if needle in text:
            text = text.replace(needle, REDACTED)
    return URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)


def scrub(value: Any, secrets: list[str] | None = None) -> Any:
    """`value` (JSON-like: params, metadata, messages) with anything that looks like a
    secret replaced: values under keys named like one, the values of secret environment
    variables, and user:password@ in URLs."""
    if isinstance(value, dict):
        return {
            k: REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "") else scrub(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        return redact(value, secrets or ())
    return value


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment: fit for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def install_log_redaction() -> None:
    """Redact every log record this process creates, whichever logger or handler."""
    current = logging.getLogRecordFactory()
    if getattr(current, "corpusflow_redacts", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = current(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to logging to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record

    factory.corpusflow_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)

"""Hashing and deterministic keys: the only place ids and content hashes are made.

The same input always gives the same ids, so a re-run upserts nothing new and never
duplicates; a changed chunk gets a new id and the old one becomes stale.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

# Fixed forever: changing it would re-key every collection ever built.
CORPUSFLOW_NAMESPACE = uuid.UUID("6f1c3b1e-6a52-5d8e-9a57-2f0c1b7e4c21")


def sha256_text(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no incidental whitespace: equal values, equal bytes."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def hash_value(value: Any) -> str:
    """sha256 of the canonical JSON of a value (params, settings, metadata)."""
    return sha256_text(canonical_json(value))


def chunk_id(source_id: str, chunk_index: int, chunk_text: str) -> str:
    """UUIDv5 of `source_id|chunk_index|sha256(text)` (design decision 1)."""
    name = f"{source_id}|{chunk_index}|{sha256_text(chunk_text)}"
    return str(uuid.uuid5(CORPUSFLOW_NAMESPACE, name))

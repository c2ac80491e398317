"""Which torch device the local model runs on (`embedding.device`), and its batch size.

`auto` takes CUDA when torch sees a GPU, else the CPU. An explicit device this machine lacks
falls back to the CPU with one warning rather than failing: the same params.yaml runs on a
laptop and on a GPU box, and a vector is a vector wherever it was computed (so the device is
not part of the embedding cache's key). Resolved when the model loads, never before: the
check imports torch, which a no-op run must not pay for.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

CPU = "cpu"
# texts per forward pass when params leave `embedding.batch_size` empty. On the CPU, 8:
# less padding and attention matrices that stay in cache (1,757 article chunks of up to 256
# tokens, calls of 64, 2 threads: 44-46 s in 8s, 45 s in 4s, 58-61 s in 32s); a GPU is
# fed more at once (MiniLM at 256 tokens fits many times over)
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 128, "mps": 64}


def _missing(device: str) -> str | None:
    """Why `device` cannot be used here, or None when torch can run on it."""
    import torch

    kind, _, number = device.partition(":")
    if kind == "mps":
        return None if torch.backends.mps.is_available() else "torch sees no MPS device"
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return "torch sees no CUDA GPU"
        if number and int(number) >= count:
            return f"torch sees {count} CUDA GPU{'s' if count > 1 else ''}"
    return None


def resolve_device(requested: str) -> str:
    """The device to load the model on: `requested` when available, else the CPU."""
    if requested == CPU:
        return CPU
    if requested == "auto":
        return "cuda" if _missing("cuda") is None else CPU
    why = _missing(requested)
    if why is None:
        return requested
    log.warning("embedding.device %s is not available here (%s): using cpu", requested, why)
    return CPU


def batch_size_for(device: str, configured: int | None) -> int:
    """`embedding.batch_size` when set, else the device's default."""
    return configured or DEFAULT_BATCH_SIZE[device.partition(":")[0]]

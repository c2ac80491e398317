"""One LlamaIndex step: an `IngestionPipeline` with a persisted docstore and its Milvus store.

    .bench-venvs/llamaindex/bin/python benchmarks/peer_runners/llamaindex_pipeline.py \
        --articles CORPUS/articles --work STATE

Runs in the LlamaIndex venv (`make bench-peers`). Docstore strategy upserts_and_delete (so
documents gone from the input are deleted, as LangChain's full cleanup); the docstore and
the pipeline's cache persist under --work beside Milvus Lite.
"""

from __future__ import annotations

import time

import _runner


def main() -> None:
    started = time.perf_counter()
    args = _runner.arguments(__doc__)
    from llama_index.core import Document
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.node_parser import LangchainNodeParser
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.milvus import MilvusVectorStore

    docs = [
        # metadata kept out of the embedded text: every peer embeds the same chunk texts
        Document(text=text, id_=key, metadata=meta, excluded_embed_metadata_keys=list(meta))
        for key, text, meta in _runner.articles(args.articles)
    ]
    store = MilvusVectorStore(
        uri=str(args.work / "milvus.db"),
        collection_name=_runner.COLLECTION,
        dim=_runner.DIMENSION,
        overwrite=False,
    )
    store.client.load_collection(_runner.COLLECTION)  # else its first query finds nothing
    embed = HuggingFaceEmbedding(
        model_name=_runner.model_path(), device="cpu", embed_batch_size=_runner.BATCH_SIZE
    )
    pipeline = IngestionPipeline(
        transformations=[LangchainNodeParser(_runner.splitter()), embed],
        vector_store=store,
        docstore=SimpleDocumentStore(),
        docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE,
    )
    persist = args.work / "pipeline"
    if persist.exists():
        pipeline.load(str(persist))
    nodes = pipeline.run(documents=docs)
    pipeline.persist(str(persist))
    _runner.report(started, documents=len(docs), nodes_written=len(nodes))


if __name__ == "__main__":
    main()

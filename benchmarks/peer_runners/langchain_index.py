"""One LangChain step: `index(..., cleanup="full")` with a SQLRecordManager into langchain-milvus.

    .bench-venvs/langchain/bin/python benchmarks/peer_runners/langchain_index.py \
        --articles CORPUS/articles --work STATE

Runs in the LangChain venv (`make bench-peers`). The record manager (SQLite) and Milvus Lite
live under --work, so the next step in a fresh process sees what this one stored.
"""

from __future__ import annotations

import time

import _runner


def main() -> None:
    started = time.perf_counter()
    args = _runner.arguments(__doc__)
    from langchain_community.indexes._sql_record_manager import SQLRecordManager
    from langchain_core.documents import Document
    from langchain_core.indexing import index
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_milvus import Milvus

    docs = [
        Document(page_content=text, metadata={"source": key, **meta})
        for key, text, meta in _runner.articles(args.articles)
    ]
    chunks = _runner.splitter().split_documents(docs)
    embeddings = HuggingFaceEmbeddings(
        model_name=_runner.model_path(),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"batch_size": _runner.BATCH_SIZE},
    )
    store = Milvus(
        embedding_function=embeddings,
        collection_name=_runner.COLLECTION,
        connection_args={"uri": str(args.work / "milvus.db")},
        auto_id=False,
    )
    records = SQLRecordManager(
        f"milvus/{_runner.COLLECTION}", db_url=f"sqlite:///{args.work / 'records.sqlite'}"
    )
    records.create_schema()
    result = index(
        chunks, records, store, cleanup="full", source_id_key="source", key_encoder="sha256"
    )
    _runner.report(started, documents=len(docs), chunks=len(chunks), **result)


if __name__ == "__main__":
    main()

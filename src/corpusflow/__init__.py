"""corpusflow: transcripts and articles into Milvus, with versioned snapshots and lineage."""

__version__ = "0.1.0"

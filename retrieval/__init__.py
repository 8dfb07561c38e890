"""Ingestion and retrieval of documents, organised in collections.

Ingest: sentences.py (spans that tile the text) -> chunkers/ (fixed, sentences, ppl, margin, then
merging and a size cap) -> embedder.py + situated.py (chunk vectors with context) -> store.py (SQLite,
the source of truth) + index.py (FAISS), per collection in collection.py. collections.py manages all
collections, runs ingestion as background jobs (jobs.py, ingest_job.py) and answers retrieval.
"""

"""Ingestion: parse documents, chunk them, embed and upsert into the index."""

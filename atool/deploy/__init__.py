"""Deployment: runtime backends, uncertainty, selection strategies, query lists, ingest."""

"""Retrieval: embedders, the vector index, search, prompts, chat models and answers."""

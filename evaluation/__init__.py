"""Evaluation: retrieval relevance and answer grounding, with reports and a regression gate."""

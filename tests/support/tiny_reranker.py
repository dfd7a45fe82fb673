"""A tiny cross-encoder built on the spot: random BERT weights, the bundled MiniLM's tokenizer.

No reranking weights can be downloaded here, so tests (and bench/rerank.py) save this one
to a directory and load it the way an operator's downloaded model is loaded. Its scores are
meaningless but deterministic: tests compare them with a direct forward pass.
"""

from __future__ import annotations

from pathlib import Path

from retrieval.onnx_export import bundled_model_dir

LAYERS = 2
HIDDEN = 32


def save_tiny_cross_encoder(path: Path, *, seed: int = 0) -> Path:
    """Write a one-label BertForSequenceClassification and its tokenizer to `path`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_dir()), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=512,
        num_labels=1,  # type: ignore[call-arg]  # a PretrainedConfig keyword
        initializer_range=0.5,  # spread the scores apart (BERT's 0.02 puts all near 0.5)
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def direct_scores(path: Path, query: str, documents: list[str]) -> list[float]:
    """sigmoid(logit) of each (query, document) pair, one pair per forward pass (reference)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
    model.train(False)  # inference: no dropout
    scores = []
    with torch.inference_mode():
        for document in documents:
            features = tokenizer(query, document, truncation=True, return_tensors="pt")
            scores.append(float(torch.sigmoid(model(**features).logits[0, 0])))
    return scores

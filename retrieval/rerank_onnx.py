"""The local cross-encoder on ONNX Runtime: exported once from the operator's model directory.

`ensure_cross_encoder_onnx` traces the directory's one-label sequence classifier to ONNX (eager
attention, dynamic batch and length), checks the graph against torch on probe pairs, and keeps
it with its tokenizer in ``<venv>/share/ondata/rerank/<model>`` (``~/.cache/ondata/onnx/rerank``
when the venv is read-only), behind a manifest naming the source's fingerprint, so a changed
model is exported again and a finished export is reused by every process.

`OnnxCrossEncoder` scores pairs as sentence-transformers' CrossEncoder does: the pair tokenised
together (longest-first truncation to max_length), one logit, sigmoid.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import RerankerModelError
from retrieval.embedders import available_cores
from retrieval.onnx_export import (
    file_lock,
    fuse_operators,
    manifest_matches,
    model_key,
    source_fingerprint,
)

logger = logging.getLogger(__name__)

EXPORT_FORMAT = 1
MODEL_FILE = "cross-encoder.onnx"
MANIFEST_FILE = "ondata-rerank-export.json"
OPSET = 17
RUN_ROWS = 8
"""Pairs per ONNX Runtime run at most (bench/rerank.py: small runs of similar length)."""
MAX_PROBE_DIFF = 1e-3
"""Largest |sigmoid(onnx) - sigmoid(torch)| accepted on the probe pairs."""
_PROBES = (
    ("when are tax returns due", "Tax returns are due in April; late returns incur penalties."),
    ("x", "x"),
    (
        "white matter development",
        "Alterations of the architecture of cerebral white matter in the developing human "
        "brain can affect cortical development. " * 20,
    ),
)


def export_dir_for(model_dir: Path) -> Path:
    """Where the export of this model directory lives (next to the code, like the embedder's)."""
    return Path(sys.prefix) / "share" / "ondata" / "rerank" / model_key(model_dir)


def fallback_dir_for(model_dir: Path) -> Path:
    return Path.home() / ".cache" / "ondata" / "onnx" / "rerank" / model_key(model_dir)


def ensure_cross_encoder_onnx(model_dir: Path, *, export_dir: Path | None = None) -> Path:
    """A directory with a verified ONNX export of the cross-encoder in model_dir."""
    targets = (
        [export_dir] if export_dir else [export_dir_for(model_dir), fallback_dir_for(model_dir)]
    )
    last: OSError | None = None
    for target in targets:
        if _is_valid(target, model_dir):
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(target.parent / f".{target.name}.lock"):
                if not _is_valid(target, model_dir):
                    _export(model_dir, target)
            return target
        except OSError as exc:  # a read-only venv: try the user's cache
            last = exc
    raise RerankerModelError(f"cannot write the ONNX export of {model_dir}: {last}")


def _is_valid(export_dir: Path, model_dir: Path) -> bool:
    return manifest_matches(
        export_dir, model_dir, manifest=MANIFEST_FILE, model=MODEL_FILE, fmt=EXPORT_FORMAT
    )


def _export(model_dir: Path, export_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager"
    ).eval()
    names = [n for n in tokenizer.model_input_names if n in _INPUTS]
    sample = tokenizer(
        ["a padded pair", "x"], ["with a second text", "y"], padding=True, return_tensors="pt"
    )
    args = tuple(sample[n] for n in names)

    class _Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(names, inputs, strict=True))).logits

    export_dir.mkdir(parents=True, exist_ok=True)
    staging = export_dir / f"{MODEL_FILE}.tmp"
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about paths this model does not take
        torch.onnx.export(
            _Logits(model).eval(),
            args,
            str(staging),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    tokenizer.save_pretrained(str(export_dir))
    with torch.inference_mode():
        expected = [
            float(
                torch.sigmoid(
                    model(**tokenizer(q, d, truncation=True, return_tensors="pt")).logits[0, 0]
                )
            )
            for q, d in _PROBES
        ]
    fused = export_dir / f"{MODEL_FILE}.fused.tmp"
    candidates = [fused, staging] if _optimize(staging, fused, model.config) else [staging]
    diff = float("inf")
    for candidate in candidates:
        session = OnnxCrossEncoder(export_dir, model_file=candidate.name, max_length=512)
        got = [session.score(q, [d])[0] for q, d in _PROBES]
        diff = max(abs(a - b) for a, b in zip(got, expected, strict=True))
        if diff <= MAX_PROBE_DIFF:
            candidate.replace(export_dir / MODEL_FILE)
            break
        logger.warning("%s disagrees with torch (score diff %.2e)", candidate.name, diff)
    for leftover in (fused, staging):
        leftover.unlink(missing_ok=True)
    if diff > MAX_PROBE_DIFF:
        raise RerankerModelError(
            f"the ONNX export of {model_dir} disagrees with torch (score diff {diff:.2e})"
        )
    manifest = {
        "format": EXPORT_FORMAT,
        "source": source_fingerprint(model_dir),
        "model_bytes": (export_dir / MODEL_FILE).stat().st_size,
        "inputs": names,
        "probe_max_diff": diff,
    }
    (export_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    logger.info("exported the cross-encoder %s to ONNX (probe diff %.1e)", model_dir, diff)


_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_FUSABLE = ("bert", "roberta", "xlm-roberta", "distilbert", "electra")
"""Model types onnxruntime's transformer optimizer fuses (attention, GELU, layer norm)."""


def _optimize(raw: Path, target: Path, config: Any) -> bool:
    """Fuse the graph's operators (as the embedder's export does); False when it cannot."""
    if getattr(config, "model_type", None) not in _FUSABLE:
        return False
    return fuse_operators(raw, target, config)


class OnnxCrossEncoder:
    """One ONNX Runtime session over an export; `score` is thread-safe (sessions are)."""

    def __init__(self, export_dir: Path, *, max_length: int, model_file: str = MODEL_FILE) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = available_cores()
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(export_dir / model_file), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._tokenizer = AutoTokenizer.from_pretrained(str(export_dir), local_files_only=True)
        self._max_length = min(max_length, int(self._tokenizer.model_max_length or max_length))

    def score(self, query: str, documents: Sequence[str], *, batch_size: int = 32) -> list[float]:
        """sigmoid(logit) per (query, document), in input order.

        Pairs run longest first in runs of at most RUN_ROWS of similar length: little padding,
        and a small run's activations stay in the CPU's cache (as for the embedder).
        """
        order = sorted(range(len(documents)), key=lambda i: -len(documents[i]))
        rows = max(1, min(batch_size, RUN_ROWS))
        scores = [0.0] * len(documents)
        for start in range(0, len(order), rows):
            run = order[start : start + rows]
            features = self._tokenizer(
                [query] * len(run),
                [documents[i] for i in run],
                padding=True,
                truncation=True,
                max_length=self._max_length,
                return_tensors="np",
            )
            feed = {name: features[name].astype(np.int64) for name in self._inputs}
            (logits,) = self._session.run(["logits"], feed)
            for i, value in zip(run, _sigmoid(np.asarray(logits)[:, 0]), strict=True):
                scores[i] = float(value)
        return scores


def _sigmoid(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))

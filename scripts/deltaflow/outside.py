"""Models we did not train, as arms (``models:``): a competitor, a vendor's Instruct model, an
earlier adapter, re-run beside ours on the same items with the same decoding and caches.

Each is imported once into results/models/outside/<name>/ by its own job, so that the eval job
loads it like one of ours and its manifest records where it came from and what its files hash
to (the audit chain and the eval cache key read them):

- ``full``: a whole model, written as safetensors with its tokenizer (``basemodel.materialize_base``,
  the same code the base goes through: a transformers folder, a pinned hub revision, a GGUF
  dequantized); evaluated as our merged exports are.
- ``adapter``: a PEFT adapter's files, checked to load onto our base (PEFT itself applies it);
  evaluated as our runs' adapters are.
- ``gguf``: a GGUF file run through llama.cpp, as our GGUF exports are, with the tokenizer
  transformers reads from the GGUF itself.
- ``served``: a model behind an OpenAI-compatible server (``bench.served``): the import checks
  that the server lists the model, records what it reports, and writes the tokenizer the
  prompts are built with; generation benchmarks only.

A model kind is one module plus one kind in ``deltaflow.models``: the eval, tables, audit and
release code go through the model graph and need nothing of their own.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from . import sources
from .errors import DeltaflowError
from .io import sha256_file, sha256_path
from .models import OUTSIDE_GGUF as GGUF_NAME

log = logging.getLogger(__name__)

# the source types each kind reads (the base's source vocabulary, $defs/model_source)
SOURCE_TYPES = {
    "full": ("local", "hub", "gguf_package", "random_init"),
    "adapter": ("local", "hub"),
    "gguf": ("local", "hub", "gguf_package"),
}


def check_outside_models(config: dict, *, check_files: bool):
    """Every ``models:`` entry: a name no workflow model has, a source its kind can read, and
    (with ``check_files``) local files that exist."""
    taken = {"base", *config["runs"], *config["merges"]}
    for name, spec in sorted(config["models"].items()):
        key = f"models.{name}"
        if name in taken:
            yield (
                f"config key '{key}': '{name}' is already a model of this workflow (the base, a run "
                "or a merge); give the outside model another name"
            )
        if spec["kind"] == "served":
            yield from _check_served(config, name, spec, check_files=check_files)
            continue
        kind, src = spec["kind"], spec["source"]
        if src["type"] not in SOURCE_TYPES[kind]:
            yield (
                f"config key '{key}.source.type': a model of kind {kind} cannot come from '{src['type']}'; "
                f"use one of {', '.join(SOURCE_TYPES[kind])}"
            )
            continue
        if src["type"] in ("local", "hub") and kind == "gguf" and not src.get("file"):
            yield f"config key '{key}.source.file': a gguf model names its GGUF file in the folder or repo"
            continue
        if src["type"] in ("local", "hub") and kind == "adapter" and src.get("file"):
            yield (
                f"config key '{key}.source.file': an adapter is a folder; `file` names a GGUF "
                "(kind: gguf runs it through llama.cpp, kind: full dequantizes it)"
            )
            continue
        if check_files and src["type"] == "local":
            yield from _check_local(key, kind, src)
        if check_files and src["type"] == "random_init" and not Path(src["corpus"]).is_file():
            yield f"config key '{key}.source.corpus': file '{src['corpus']}' does not exist"


def _check_served(config: dict, name: str, spec: dict, *, check_files: bool):
    """A served model's tokenizer folder exists, and unless its server gives prompt log-probs
    (``served.logprobs``) it judges in generate mode and runs no multiple-choice benchmark."""
    from .bench.from_config import benchmark_spec
    from .bench.judging import judge_settings
    from .suites import model_benchmarks

    key = f"models.{name}.served"
    if spec["releasable"]:
        yield (
            f"config key 'models.{name}.releasable': a served model has no weights here to release; "
            "compare it, and release a model of the workflow"
        )
    start = spec["served"].get("start")
    if start:
        yield from _check_started(config, key, start, check_files=check_files)
    tok = spec["served"]["tokenizer"]
    if check_files and tok and not (Path(tok) / "tokenizer_config.json").is_file():
        yield f"config key '{key}.tokenizer': no tokenizer (tokenizer_config.json) in '{tok}'"
    judges = [
        (f"benchmarks.{b}.judge", spec.get("judge")) for b, spec in sorted(config["benchmarks"].items())
    ]
    judges += [
        (f"recipes.{r}.rewards[{i}].judge", reward.get("judge"))
        for r, recipe in sorted(config["recipes"].items())
        for i, reward in enumerate(recipe.get("rewards") or [])
    ]
    if spec["served"]["logprobs"]:
        return
    for where, judge in judges:
        if (judge or {}).get("model") == name and judge_settings(judge)["mode"] != "generate":
            yield (
                f"config key '{where}.mode': the judge '{name}' is served without prompt log-probs "
                f"({key}.logprobs: false); use mode: generate (the verdict parsed from its text), or set "
                f"{key}.logprobs: true if the server gives them (echo + logprobs)"
            )
    for bench in model_benchmarks(config, [name]).get(name, []):
        if benchmark_spec(config, bench).output_type == "multiple_choice":
            yield (
                f"config key '{key}': benchmark '{bench}' is multiple-choice (log-likelihoods), which needs "
                f"prompt log-probs from the server: set {key}.logprobs: true if it gives them (echo + "
                "logprobs), or leave the model out of it (`benchmarks.<b>.models` or suites)"
            )


def _check_started(config: dict, key: str, start: dict, *, check_files: bool):
    """``served.start`` names weights of this config its server can run, and the server's
    program is installed."""
    from .models import ModelGraph

    graph = ModelGraph(config)
    if graph.served_weights(start) is None:
        want = (
            "a GGUF (an export such as <model>.f16.gguf, or a models: entry of kind gguf)"
            if start["server"] == "llama_cpp"
            else "a whole model (a base, an export such as <model>.merged, a full run or merge, or a models: "
            "entry of kind full)"
        )
        yield (
            f"config key '{key}.start.weights': '{start['weights']}' is not a model of this config that "
            f"{start['server']} can serve; name {want}"
        )
    if check_files and start["server"] == "vllm":
        from .bench.vllm_backend import vllm_python

        try:
            vllm_python(config["eval"].get("vllm_python"))
        except DeltaflowError as exc:
            yield f"config key '{key}.start.server': {exc}"


def _check_local(key: str, kind: str, src: dict):
    from .basemodel import check_local_model

    if kind == "full":
        yield from check_local_model(src, key=f"{key}.source")
        return
    path = Path(src["path"])
    need = path / (src["file"] if kind == "gguf" else "adapter_config.json")
    if not need.is_file():
        what = "GGUF file" if kind == "gguf" else "PEFT adapter (adapter_config.json)"
        yield (
            f"config key '{key}.source.path': no {what} at '{need}' (paths are relative to the "
            f"working directory {Path.cwd()})"
        )


def import_outside_model(spec: dict, out_dir: Path, base_dir: Path) -> dict:
    """Write the outside model ``spec`` into ``out_dir``; return what to record in its manifest:
    the source's provenance and the hash of every file written."""
    from .basemodel import materialize_base

    out_dir.mkdir(parents=True, exist_ok=True)
    if spec["kind"] == "served":
        return _import_served(spec["served"], out_dir, base_dir)
    kind, src = spec["kind"], spec["source"]
    if kind == "full":
        info = materialize_base(src, out_dir)
        extra = {"weights_sha256": sha256_path(out_dir)}  # what the eval cache keys on (merged_dir)
    elif kind == "adapter":
        info = _fetch_folder(src, out_dir)
        extra = {"adapter": _check_adapter_applies(out_dir, base_dir)}
    else:
        info = _fetch_gguf(src, out_dir / GGUF_NAME)
        _tokenizer_from_gguf(out_dir / GGUF_NAME, out_dir)
        extra = {}
    files = {f.name: sha256_file(f) for f in sorted(out_dir.iterdir()) if f.is_file()}
    return {"form": kind, "source": info, "files": files, **extra}


def _import_served(served: dict, out_dir: Path, base_dir: Path) -> dict:
    """What the server reports of the model (bench.served.identity) and the tokenizer the
    prompts are built with, written beside the manifest."""
    from transformers import AutoTokenizer

    from .bench.served import identity, probe_logprobs, running, started_identity

    with running(served) as live:  # a server the jobs start: started here once, to check it
        reported = identity(live)
        if served["logprobs"]:
            probe_logprobs(live)
    tok_dir = Path(served["tokenizer"] or served.get("weights_tokenizer") or base_dir)
    AutoTokenizer.from_pretrained(str(tok_dir)).save_pretrained(str(out_dir))
    files = {f.name: sha256_file(f) for f in sorted(out_dir.iterdir()) if f.is_file()}
    started = {"started": started_identity(served)} if served.get("start") else {}
    return {"form": "served", "served": reported, "tokenizer_from": str(tok_dir), "files": files, **started}


def _fetch_folder(src: dict, out_dir: Path) -> dict:
    """A local folder's or a pinned hub revision's files, copied flat (a PEFT adapter folder)."""
    if src["type"] == "local":
        folder = Path(src["path"])
        info = {"type": "local", "path": str(folder.resolve())}
    else:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(src["id"], revision=src["revision"]))
        info = {"type": "hub", "id": src["id"], "revision": src["revision"], "snapshot": folder.name}
    for f in sorted(folder.iterdir()):
        if f.is_file():
            shutil.copy2(f, out_dir / f.name)
    return info


def _fetch_gguf(src: dict, dest: Path) -> dict:
    if src["type"] == "gguf_package":
        path = sources.package_file(src["package"], src["file"])
        info = sources.describe({"type": "package_file", "package": src["package"], "path": src["file"]})
    elif src["type"] == "local":
        path = Path(src["path"]) / src["file"]
        info = {"type": "local", "path": str(path.resolve())}
    else:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(src["id"], src["file"], revision=src["revision"]))
        info = {"type": "hub", "id": src["id"], "revision": src["revision"], "file": src["file"]}
    log.info("copying %s (%.0f MB)", path, path.stat().st_size / 1e6)
    shutil.copyfile(path, dest)
    return info


def _tokenizer_from_gguf(gguf: Path, out_dir: Path) -> None:
    """The HF tokenizer llama.cpp's file carries (read by transformers): what the eval tokenizes
    prompts and continuations with, as it does for our GGUF exports with the merged folder's."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.save_pretrained(out_dir)


def _check_adapter_applies(adapter_dir: Path, base_dir: Path) -> dict:
    """Load the adapter onto our base with PEFT (a mismatch of modules or shapes fails here, in
    the import job, not in every eval job); return its PEFT type, rank and target modules."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    cfg = PeftConfig.from_pretrained(str(adapter_dir))
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    try:
        PeftModel.from_pretrained(base, str(adapter_dir))
    except Exception as exc:  # PEFT raises RuntimeError/ValueError/KeyError by what mismatches
        raise ValueError(
            f"the adapter in {adapter_dir} does not load onto the base model ({exc}); an outside "
            "adapter must be trained on the configured base_model"
        ) from exc
    targets = getattr(cfg, "target_modules", None)
    return {
        "peft_type": str(cfg.peft_type),
        "r": getattr(cfg, "r", None),
        "target_modules": sorted(targets) if isinstance(targets, (set, list)) else targets,
        "trained_on": cfg.base_model_name_or_path,
    }

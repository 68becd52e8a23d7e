"""Code dependencies are derived from imports, never listed by hand; the eval cache and the
training resume key change with the code and package versions that compute outputs.

The end-to-end half (editing any module reruns exactly the stages that import it) is in
test_reruns.py::test_every_module_edit_reruns_exactly_the_stages_that_import_it."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from deltaflow.bench import run as benchmark_eval
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.codedeps import PACKAGE_DIR, code_closure, direct_imports, module_path
from deltaflow.io import write_jsonl
from deltaflow.training.resume import training_resume_key


def _names(paths):
    """Package-relative file names: ``io.py``, ``bench/run.py``."""
    return {p.relative_to(PACKAGE_DIR).as_posix() for p in paths}


def test_relative_absolute_lazy_and_package_imports(tmp_path):
    pkg = tmp_path / "deltaflow"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nfrom .sub.c import thing\n")
    (pkg / "b.py").write_text("def f():\n    from .d import g  # lazy: still runs\n")
    (pkg / "sub" / "c.py").write_text("from ..e import x\nimport json\n")
    (pkg / "d.py").write_text("import deltaflow.e\n")
    (pkg / "e.py").write_text("x = 1\n")
    (pkg / "unused.py").write_text("from . import a\n")
    entry = tmp_path / "script.py"
    entry.write_text("from deltaflow import a\nfrom deltaflow.b import f\n")
    got = {p.relative_to(pkg).as_posix() for p in code_closure(entry, package_dir=pkg)}
    assert got == {"__init__.py", "a.py", "b.py", "sub/__init__.py", "sub/c.py", "d.py", "e.py"}
    # a module's own closure includes itself; an attribute import is not a module
    assert {p.name for p in code_closure(pkg / "e.py", package_dir=pkg)} == {"e.py"}
    assert direct_imports(pkg / "sub" / "c.py", pkg) == {pkg / "__init__.py", pkg / "e.py"}


def _runtime_imports(module: str) -> set[str]:
    """The deltaflow modules that importing ``module`` actually loads (module level only)."""
    code = (
        f"import sys, json; import deltaflow.{module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m == 'deltaflow' or m.startswith('deltaflow.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "scripts"), "PATH": "/usr/bin:/bin"},
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "module",
    [
        "bench.raw_outputs",
        "training.runner",
        "tables",
        "model_card",
        "bench.items",
        "mixture",
        "llamacpp",
        "selection",
        "plots",
        "basemodel",
    ],
)
def test_static_closure_covers_what_python_really_imports(module):
    """The AST closure is a superset of the modules Python loads when importing the module (it
    also has the ones imported inside functions, which run later)."""
    static = {
        ".".join(["deltaflow", *p.relative_to(PACKAGE_DIR).with_suffix("").parts]).removesuffix(".__init__")
        for p in code_closure(module_path(module))
    }
    assert _runtime_imports(module) <= static


def test_the_drift_the_issue_found_is_covered():
    """Modules the hand-kept list missed: basemodel -> sources, selection/plots -> tables,
    benchmarks -> datasets, io everywhere."""
    scripts = REPO / "scripts"
    assert {"sources.py", "io.py"} <= _names(code_closure(scripts / "base_model.py"))
    assert "tables.py" in _names(code_closure(scripts / "select_model.py"))
    assert "tables.py" in _names(code_closure(scripts / "plots.py"))
    assert {"datasets.py", "bench/synthetic_tasks.py"} <= _names(code_closure(scripts / "benchmark_items.py"))
    assert "bench/vllm_backend.py" in _names(code_closure(scripts / "evaluate.py"))
    # and nothing a stage does not import: the tables never depend on training code
    assert not {
        p
        for p in _names(code_closure(scripts / "delta_table.py"))
        if p.startswith("training") or p == "bench/raw_outputs.py"
    }
    assert "mixture.py" not in _names(code_closure(scripts / "delta_table.py"))


def test_every_rule_with_a_script_declares_its_derived_code():
    """Each rule's `code=` input names the same script as its `script:` directive."""
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            rule = re.match(r"rule (\w+):", block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+\.py)"', block)
            if not rule or not script:
                continue
            via = f'script_code("{script.group(1)}")'
            # evaluate and benchmark_items get their code from an input function in common.smk
            indirect = re.search(r"unpack\((get_\w+)\)", block)
            if via not in block and indirect:
                common = (REPO / "rules/common.smk").read_text()
                body = common[common.index(f"def {indirect.group(1)}(") :]
                body = body[: body.index("\ndef ", 1)]
                assert via in body, f"{smk.name}: rule {rule.group(1)} ({indirect.group(1)}) lacks {via}"
            else:
                assert via in block, f"{smk.name}: rule {rule.group(1)} lacks code={via}"


def test_generation_code_excludes_scoring_and_includes_the_vllm_worker_for_vllm():
    hf = _names(benchmark_eval.generation_code("hf"))
    assert {"bench/raw_outputs.py", "bench/lmeval.py", "bench/spec.py", "vocab.py", "llamacpp.py"} <= hf
    assert not {"bench/scoring/metrics.py", "sandbox.py", "provenance.py", "bench/run.py"} & hf
    vllm = _names(benchmark_eval.generation_code("vllm"))
    assert "bench/vllm_backend.py" in vllm and "bench/vllm_backend.py" not in hf


def _key(docs, **over):
    args = {
        "model_identity": {"base_weights": "abc"},
        "spec": BenchmarkSpec.from_dict(
            {"name": "x", "output_type": "generate_until", "decoding": {"max_gen_toks": 8}}
        ),
        "docs_path": docs,
        "settings": {"backend": "hf", "device_class": "cpu"},
    }
    args.update(over)
    return benchmark_eval.cache_key(**args)


def test_cache_key_changes_with_package_versions_code_and_device(tmp_path, monkeypatch):
    docs = tmp_path / "docs.jsonl"
    write_jsonl(docs, [{"doc_id": 1}])
    real = _key(docs)
    assert real == _key(docs)  # stable
    versions = dict(benchmark_eval.output_versions())
    assert _key(docs, versions=versions) == real
    # a faked torch version is a miss, never a silent reuse
    monkeypatch.setattr(benchmark_eval, "output_versions", lambda *a: {**versions, "torch": "9.9.9"})
    assert _key(docs) != real
    monkeypatch.undo()
    assert _key(docs, settings={"backend": "hf", "device_class": "cuda:NVIDIA H200"}) != real
    # an edited generation module changes the key
    code = [Path(p) for p in benchmark_eval.generation_code("hf")]
    copies = []
    for p in code:
        c = tmp_path / "copy" / p.relative_to(PACKAGE_DIR)
        c.parent.mkdir(parents=True, exist_ok=True)
        c.write_text(p.read_text())
        copies.append(c)
    assert _key(docs, code=copies) == real
    copies[0].write_text(copies[0].read_text() + "\n# edited\n")
    assert _key(docs, code=copies) != real


def test_resume_key_changes_with_versions_and_device():
    inputs = {"train": "t", "recipe": {"r": 4}, "base": "b"}
    versions = {"torch": "2.13.0", "transformers": "5.23.0"}
    key = training_resume_key(inputs, device="cpu", versions=versions)
    assert key == training_resume_key(inputs, device="cpu", versions=dict(versions))
    assert key != training_resume_key(inputs, device="cpu", versions={**versions, "torch": "2.14.0"})
    assert key != training_resume_key(inputs, device="cuda", versions=versions)
    assert key != training_resume_key({**inputs, "train": "t2"}, device="cpu", versions=versions)

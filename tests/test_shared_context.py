"""One forward pass per shared context gives HFLM's log-likelihoods and greedy flags."""

import random

import pytest
from conftest import tiny_random_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from lm_eval.models.huggingface import HFLM

    from deltaflow.bench.shared_context import SharedContextHFLM

    path = str(tiny_random_model(tmp_path_factory.mktemp("tiny")))
    kw = {"pretrained": path, "device": "cpu", "batch_size": 4, "dtype": "float32", "max_length": 48}
    return HFLM(**kw), SharedContextHFLM(**kw)


def test_every_request_scores_as_hflm_scores_it(models):
    import torch

    hf, shared = models
    assert shared._takes_positions()  # Llama: packed, not HFLM's own path
    rng = random.Random(0)
    vocab = hf.model.config.vocab_size
    requests = []
    for n_ctx in (1, 2, 7, 20, 40):  # a one-token context has nothing to cache
        ctx = [rng.randrange(vocab) for _ in range(n_ctx)]
        greedy = hf.model.generate(torch.tensor([ctx]), max_new_tokens=3, do_sample=False)[0, n_ctx:].tolist()
        conts = [[rng.randrange(vocab) for _ in range(k)] for k in (1, 3, 5, 12)] + [greedy]
        requests += [((f"c{n_ctx}", str(c)), ctx, c) for c in conts]
    rng.shuffle(requests)  # groups interleaved, as lm-eval's request order does
    theirs = hf._loglikelihood_tokens(requests, disable_tqdm=True)
    ours = shared._loglikelihood_tokens(requests, disable_tqdm=True)
    assert len(ours) == len(requests)
    for (_, ctx, cont), (lp, greedy), (ref_lp, ref_greedy) in zip(requests, ours, theirs):
        # 40 + 12 tokens exceed max_length 48: HFLM's own left-truncating path scores those
        assert lp == pytest.approx(ref_lp, abs=1e-4), (len(ctx), len(cont))
        assert greedy == ref_greedy
    assert sum(g for _, g in ours) == 5  # each context's greedy continuation, and only those


def test_an_arc_style_task_through_lm_eval_scores_the_same(models, tmp_path):
    """Both models through lm-eval's own request building (simple_evaluate on a local task)."""
    from deltaflow.bench import registry
    from deltaflow.bench.items import prepare_docs
    from deltaflow.bench.raw_outputs import _lm_eval_samples
    from deltaflow.bench.spec import BenchmarkSpec
    from deltaflow.io import write_jsonl

    hf, shared = models
    spec = BenchmarkSpec.from_dict({**registry.load("arc_easy"), "name": "arc_easy", "n": 8, "seed": 1234})
    write_jsonl(tmp_path / "docs.jsonl", prepare_docs(spec))
    ref = _lm_eval_samples(hf, spec, tmp_path / "docs.jsonl")
    got = _lm_eval_samples(shared, spec, tmp_path / "docs.jsonl")
    assert [s["doc_id"] for s in got] == [s["doc_id"] for s in ref]
    for a, b in zip(got, ref):
        assert [r[0][0] for r in a["resps"]] == pytest.approx([r[0][0] for r in b["resps"]], abs=1e-4)
        assert a["acc"] == b["acc"]


def test_generation_computes_a_shared_prompt_prefix_once_and_generates_the_same(models):
    """Left-padded prompts that share 12 tokens (a system prompt, few-shot examples): the prefix
    runs once (batch 1, one forward call more, none of the batch's prefill repeats it) and the
    greedy tokens equal HF generate's on the whole prompts."""
    import torch

    hf, shared = models
    rng = random.Random(2)
    vocab = hf.model.config.vocab_size
    prefix = [rng.randrange(3, vocab) for _ in range(12)]
    prompts = [prefix + [rng.randrange(3, vocab) for _ in range(k)] for k in (1, 5, 9)]
    width = max(map(len, prompts))
    pad = hf.tokenizer.pad_token_id or 0
    context = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    kw = {"max_length": width + 6, "stop": ["never-generated"], "do_sample": False}
    ref = hf._model_generate(context, attention_mask=mask, **kw)
    seen = []
    hook = shared.model.register_forward_pre_hook(
        lambda m, a, k: seen.append(tuple(k["input_ids"].shape)), with_kwargs=True
    )
    try:
        got = shared._model_generate(context, attention_mask=mask, **kw)
    finally:
        hook.remove()
    assert seen[0] == (1, 12) and seen[1] == (3, width - 12)  # prefix once, then only the rests
    assert got[:, width:].tolist() == ref[:, width:].tolist()


def test_greedy_generation_drops_finished_rows_and_gives_hf_generates_text(models):
    """Rows that meet a stop string (or EOS) at different steps: each leaves the batch when it
    finishes, and every row's text, cut at its first stop string as lm-eval cuts it, equals HF
    generate's (which decodes the whole batch until every row has stopped)."""
    import torch
    from lm_eval.models.utils import postprocess_generated_text

    hf, shared = models
    rng = random.Random(3)
    vocab = hf.model.config.vocab_size
    prefix = [rng.randrange(3, vocab) for _ in range(10)]
    prompts = [prefix + [rng.randrange(3, vocab) for _ in range(k)] for k in (2, 4, 6, 8)]
    width, steps = max(map(len, prompts)), 10
    pad = hf.tokenizer.pad_token_id or 0
    context = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    free = hf._model_generate(
        context, attention_mask=mask, max_length=width + steps, stop=["never-generated"], do_sample=False
    )[:, width:].tolist()
    # stop strings that end row 0 after its 2nd token and row 2 after its 5th (the random
    # model's tokens decode to distinct strings)
    stop = [hf.tokenizer.decode([free[0][1]]), hf.tokenizer.decode([free[2][4]])]
    kw = {"max_length": width + steps, "stop": stop, "do_sample": False}
    ref = hf._model_generate(context, attention_mask=mask, **kw)[:, width:].tolist()
    rows_run = []
    hook = shared.model.register_forward_pre_hook(
        lambda m, a, k: rows_run.append(k["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        got = shared._model_generate(context, attention_mask=mask, **kw)[:, width:].tolist()
    finally:
        hook.remove()

    def text(toks):
        return postprocess_generated_text(generation=hf.tok_decode(toks), stop=stop, think_end_token=None)

    assert [text(t) for t in got] == [text(t) for t in ref]
    assert sum(s in hf.tok_decode(r) for r in ref for s in stop) >= 2  # the stops did end rows early
    assert rows_run[0] == 1 and rows_run[1] == 4  # the shared prefix, then the batch's rests
    assert min(rows_run) < 4 and sum(rows_run[1:]) < 4 * len(ref[0])  # finished rows left the batch

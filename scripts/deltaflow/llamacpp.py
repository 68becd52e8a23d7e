"""GGUF models through llama.cpp (llama-cpp-python): an lm-eval model, and the parity check.

``LlamaCppLM`` is an lm-eval ``TemplateLM``, so GGUF files go through exactly the same task
configs, prompts, filters and scoring as the HF models, and their records land in the same
tables. It mirrors lm-eval's HFLM where that decides a score:

- text is tokenized with the HF tokenizer the GGUF was converted from (the parity check
  asserts llama.cpp's own tokenizer gives the same ids), and the ids are fed to llama.cpp;
- log-likelihoods are summed over the continuation tokens from the logits at the preceding
  positions; ``is_greedy`` is whether every continuation token is the argmax;
- generation is greedy (the benchmarks decode at temperature 0), stops at EOS, at
  ``max_gen_toks`` or once a stop string appears, and the text is cut at the first stop
  string, as HFLM does.

lm-eval's own ``gguf`` model talks to a llama.cpp HTTP server; calling the library in process
needs no server to start, keep alive and shut down inside a Snakemake job.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import DeltaflowError
from .gguf_export import check_gguf

log = logging.getLogger(__name__)


def load_llama(gguf_path: Path, *, n_ctx: int = 2048, threads: int = 2):
    check_gguf(gguf_path)  # a damaged file gets our error, not llama.cpp's "failed to load"
    from llama_cpp import Llama

    # logits_all: without it llama.cpp keeps only the last position's logits and the scores
    # of every other position read as zeros
    return Llama(
        model_path=str(gguf_path),
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,
        verbose=False,
        seed=0,
    )


def cpu_backend() -> str:
    """The CPU kernels llama.cpp computes with: its system info, i.e. the instruction sets the
    loaded CPU backend was built for. The prebuilt libraries (tools/setup_llamacpp.py) carry one
    backend per x86 level and load the best this CPU runs, so the same GGUF gives different
    logits on an AVX2 and an AVX-512 machine (bench/README: up to 1.1 on q8_0, greedy texts
    differing in 4 of 12 prompts); a source build with GGML_NATIVE=OFF is AVX2-level everywhere.
    Part of a GGUF eval's cache key and of the parity report, so results made with one set of
    kernels are never resumed or reused under another."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode().strip().rstrip("|").strip()


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


class LlamaRunner:
    """Feed token ids to llama.cpp, reusing the longest common prefix of the previous call
    (multiple-choice items share their context across choices), and asking llama.cpp for the
    logits of the positions a caller reads only.

    ``Llama.eval`` with ``logits_all`` projects every position onto the vocabulary and copies it
    out; a generation step reads the last position only and a choice its own tokens. So each
    position's logits are requested in the batch (llama.cpp's per-token ``logits`` flag) when
    needed, and which of ``llm.scores``' rows hold logits is tracked (``_have``): a prefix reused
    from the cache is re-evaluated from the first needed position whose logits were never made.
    """

    def __init__(self, llm):
        self.llm = llm
        self.n_vocab = llm.n_vocab()
        self._have = np.zeros(llm.n_ctx(), dtype=bool)

    def logits(self, tokens: list[int], start: int = 0) -> np.ndarray:
        """Logits at positions ``start`` .. ``len(tokens) - 1`` of ``tokens`` (shape
        (len - start) x vocab; ``start`` 0: every position)."""
        llm = self.llm
        if len(tokens) > llm.n_ctx():
            raise DeltaflowError(f"{len(tokens)} tokens exceed llama.cpp's context of {llm.n_ctx()}")
        start = min(max(start, 0), len(tokens) - 1)
        keep = llm.longest_token_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        keep = min(keep, len(tokens) - 1)  # evaluate at least one token
        missing = np.flatnonzero(~self._have[start:keep])
        if missing.size:  # cached positions whose logits were not asked for then
            keep = start + int(missing[0])
        llm.n_tokens = keep
        self._eval(tokens[keep:], want_from=start)
        return np.array(llm.scores[start : len(tokens), : self.n_vocab])

    def _eval(self, tokens: list[int], want_from: int) -> None:
        """``Llama.eval`` (drop the cache past ``n_tokens``, decode in ``n_batch`` chunks, record
        the ids) with logits for the positions from ``want_from`` on (and each chunk's last)."""
        llm = self.llm
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        self._have[llm.n_tokens :] = False
        for i in range(0, len(tokens), llm.n_batch):
            chunk = tokens[i : i + llm.n_batch]
            n_past = llm.n_tokens
            llm._batch.set_batch(batch=chunk, n_past=n_past, logits_all=False)
            want = [j for j in range(len(chunk)) if n_past + j >= want_from or j == len(chunk) - 1]
            for j in want:
                llm._batch.batch.logits[j] = True
            llm._ctx.decode(llm._batch)
            out = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(want), llm._n_vocab))
            llm.scores[[n_past + j for j in want], :] = out
            self._have[[n_past + j for j in want]] = True
            llm.input_ids[n_past : n_past + len(chunk)] = chunk
            llm.n_tokens += len(chunk)

    def greedy(self, tokens: list[int], max_new: int, stop_ids=(), stop_check=None) -> list[int]:
        """Greedy continuation token ids (argmax each step)."""
        out: list[int] = []
        self.logits(tokens, start=len(tokens) - 1)
        llm = self.llm
        for _ in range(max_new):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1, : self.n_vocab]))
            out.append(nxt)
            if nxt in stop_ids or (stop_check is not None and stop_check(out)):
                break
            if llm.n_tokens >= llm.n_ctx():
                break
            self._eval([nxt], want_from=llm.n_tokens)
        return out


def _continuation_loglikelihoods(runner: LlamaRunner, max_length: int, requests) -> list[tuple[float, bool]]:
    """(log-likelihood, is_greedy) of each request's continuation tokens after its context, the
    sequence cut to its last ``max_length + 1`` tokens."""
    out = []
    for i, (_, ctx, cont) in enumerate(requests):
        seq = (ctx + cont)[-(max_length + 1) :]
        inp = seq[:-1]
        logp = _log_softmax(runner.logits(inp, start=len(inp) - len(cont)))
        ll = float(sum(logp[j, t] for j, t in enumerate(cont)))
        greedy = bool(all(int(np.argmax(logp[j])) == t for j, t in enumerate(cont)))
        out.append((ll, greedy))
        if (i + 1) % 200 == 0:
            log.info("loglikelihood %d/%d", i + 1, len(requests))
    return out


def make_lm(
    gguf_path: Path, tokenizer_dir: Path, *, threads: int = 2, n_ctx: int = 2048, max_gen_toks: int = 256
):
    """An lm-eval model over a GGUF file (class built lazily: lm-eval imports take seconds)."""
    from lm_eval.api.model import TemplateLM
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
    from transformers import AutoTokenizer

    class LlamaCppLM(TemplateLM):
        def __init__(self):
            super().__init__()
            self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
            self.runner = LlamaRunner(load_llama(gguf_path, n_ctx=n_ctx, threads=threads))
            self.max_length = n_ctx
            self.max_gen_toks = max_gen_toks

        @property
        def eot_token_id(self):
            return self.tokenizer.eos_token_id

        @property
        def tokenizer_name(self) -> str:
            return self.tokenizer.name_or_path.replace("/", "__")

        def chat_template(self, chat_template=False):
            return self.tokenizer.chat_template if chat_template else None

        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            return self.tokenizer.apply_chat_template(
                chat_history,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=not add_generation_prompt,
            )

        def tok_encode(self, string, add_special_tokens=None, **kw):
            kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
            return self.tokenizer.encode(string, **kwargs)

        def _loglikelihood_tokens(self, requests, disable_tqdm=False, **kw):
            return _continuation_loglikelihoods(self.runner, self.max_length, requests)

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise DeltaflowError("rolling log-likelihood (perplexity tasks) is not supported for GGUF models")

        def generate_until(self, requests, disable_tqdm=False):
            eos = self.tokenizer.decode([self.eot_token_id], skip_special_tokens=False)
            res = []
            for i, req in enumerate(requests):
                context, gen_kwargs = req.args
                kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
                if kwargs.get("do_sample") and kwargs.get("temperature", 0) > 0:
                    raise DeltaflowError(
                        "GGUF evaluation decodes greedily (temperature 0); this benchmark asks for sampling"
                    )
                until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
                max_gen = kwargs.pop("max_gen_toks")
                ctx = self.tok_encode(context)[-(self.max_length - max_gen) :]

                def stopped(toks, until=until):
                    text = self.tokenizer.decode(toks, skip_special_tokens=True)
                    return any(u and u in text for u in until)

                toks = self.runner.greedy(ctx, max_gen, stop_ids={self.eot_token_id}, stop_check=stopped)
                text = self.tokenizer.decode(toks, skip_special_tokens=True)
                res.append(postprocess_generated_text(generation=text, stop=until, think_end_token=None))
                if (i + 1) % 10 == 0:
                    log.info("generate %d/%d", i + 1, len(requests))
            return res

    return LlamaCppLM()


# ----------------------------------------------------------------------------- parity

DEFAULT_THRESHOLDS = {
    # Measured on SmolLM2-135M (12 prompts, 223 positions; bench/README.md): f16 mean KL 6.7e-6,
    # top-1 1.000, greedy 12/12; q8_0 0.0065, 0.973, 6/12; q4_k_m 0.085, 0.834, 1/12. Float
    # exports must be near-exact; quantized ones get room for their known drift.
    "f32": {"max_mean_kl": 1e-4, "min_top1": 0.99, "min_greedy": 0.9},
    "f16": {"max_mean_kl": 1e-4, "min_top1": 0.99, "min_greedy": 0.9},
    "bf16": {"max_mean_kl": 1e-3, "min_top1": 0.97, "min_greedy": 0.6},
    "q8_0": {"max_mean_kl": 0.02, "min_top1": 0.9, "min_greedy": 0.3},
    "q6_k": {"max_mean_kl": 0.04, "min_top1": 0.88, "min_greedy": 0.2},
    "q5_k_m": {"max_mean_kl": 0.06, "min_top1": 0.85, "min_greedy": 0.1},
    "q5_0": {"max_mean_kl": 0.08, "min_top1": 0.85, "min_greedy": 0.1},
    "q4_k_m": {"max_mean_kl": 0.15, "min_top1": 0.75, "min_greedy": 0.05},
    "q4_0": {"max_mean_kl": 0.2, "min_top1": 0.7, "min_greedy": 0.05},
}


def thresholds_for(gguf_type: str, configured: dict) -> dict:
    return {**DEFAULT_THRESHOLDS.get(gguf_type, DEFAULT_THRESHOLDS["q4_0"]), **configured.get(gguf_type, {})}


def kl_divergence(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """KL(P || Q) per row of two logit matrices (natural log), P the reference."""
    lp, lq = _log_softmax(logits_p), _log_softmax(logits_q)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def _logit_parity(hf, runner: LlamaRunner, hf_ids: list[int]):
    """HF and llama.cpp logits of ``hf_ids`` over their shared vocabulary, the KL per position
    and whether the two argmaxes agree per position."""
    import torch

    with torch.no_grad():
        hf_logits = hf(torch.tensor([hf_ids])).logits[0].numpy()
    vocab = min(hf_logits.shape[-1], runner.n_vocab)
    hf_logits = hf_logits[:, :vocab]
    cpp_logits = runner.logits(hf_ids)[:, :vocab]
    kl = kl_divergence(hf_logits, cpp_logits)
    agree = hf_logits.argmax(-1) == cpp_logits.argmax(-1)
    return hf_logits, cpp_logits, kl, agree


def _greedy_parity(tok, hf, runner: LlamaRunner, hf_ids: list[int], max_new_tokens: int):
    """HF's and llama.cpp's greedy continuation ids of ``hf_ids``, and the length of their
    common prefix."""
    import torch

    with torch.no_grad():
        gen = hf.generate(
            torch.tensor([hf_ids]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id or tok.eos_token_id,
        )
    hf_cont = gen[0, len(hf_ids) :].tolist()
    cpp_cont = runner.greedy(hf_ids, len(hf_cont), stop_ids=())
    matched = next((j for j, (a, b) in enumerate(zip(hf_cont, cpp_cont)) if a != b), len(hf_cont))
    return hf_cont, cpp_cont, matched


def _parity_checks(summary: dict, thresholds: dict) -> list[dict]:
    """Each parity check: its value, threshold and whether it passed."""
    return [
        {
            "check": "tokenization_identical",
            "value": summary["tokenization_identical"],
            "threshold": True,
            "passed": summary["tokenization_identical"],
        },
        {
            "check": "mean_kl",
            "value": summary["mean_kl"],
            "threshold": thresholds["max_mean_kl"],
            "passed": summary["mean_kl"] <= thresholds["max_mean_kl"],
        },
        {
            "check": "top1_agreement",
            "value": summary["top1_agreement"],
            "threshold": thresholds["min_top1"],
            "passed": summary["top1_agreement"] >= thresholds["min_top1"],
        },
        {
            "check": "greedy_agreement",
            "value": summary["greedy_agreement"],
            "threshold": thresholds["min_greedy"],
            "passed": summary["greedy_agreement"] >= thresholds["min_greedy"],
        },
    ]


def parity_report(
    hf_dir: Path,
    gguf_path: Path,
    prompts: list[str],
    *,
    gguf_type: str,
    thresholds: dict,
    max_new_tokens: int = 16,
    threads: int = 2,
) -> dict:
    """Compare a GGUF with the HF model it came from on ``prompts``; verdict per threshold."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not prompts:
        raise DeltaflowError("the parity check needs at least one prompt")
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    hf = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    llm = load_llama(gguf_path, threads=threads)
    runner = LlamaRunner(llm)
    per_prompt, kls, top1, max_diff = [], [], [], 0.0
    for i, prompt in enumerate(prompts):
        hf_ids = tok.encode(prompt, add_special_tokens=False)
        cpp_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        same_tokens = list(cpp_ids) == list(hf_ids)
        hf_logits, cpp_logits, kl, agree = _logit_parity(hf, runner, hf_ids)
        kls.extend(kl.tolist())
        top1.extend(agree.tolist())
        max_diff = max(max_diff, float(np.abs(hf_logits - cpp_logits).max()))
        hf_cont, cpp_cont, matched = _greedy_parity(tok, hf, runner, hf_ids, max_new_tokens)
        per_prompt.append(
            {
                "prompt": prompt,
                "tokens": len(hf_ids),
                "tokenization_identical": same_tokens,
                "mean_kl": float(kl.mean()),
                "top1_agreement": float(agree.mean()),
                "greedy_identical": hf_cont == cpp_cont,
                "greedy_matching_prefix": matched,
                "hf_continuation": tok.decode(hf_cont),
                "gguf_continuation": tok.decode(cpp_cont),
            }
        )
        log.info(
            "[%d/%d] kl %.5f top1 %.3f greedy %s",
            i + 1,
            len(prompts),
            kl.mean(),
            agree.mean(),
            hf_cont == cpp_cont,
        )
    summary = {
        "tokenization_identical": all(p["tokenization_identical"] for p in per_prompt),
        "mean_kl": float(np.mean(kls)),
        "top1_agreement": float(np.mean(top1)),
        "greedy_agreement": float(np.mean([p["greedy_identical"] for p in per_prompt])),
        "max_abs_logit_diff": max_diff,
        "positions": len(kls),
        "prompts": len(prompts),
    }
    checks = _parity_checks(summary, thresholds)
    failed = [c["check"] for c in checks if not c["passed"]]
    return {
        "gguf": str(gguf_path),
        "hf_model": str(hf_dir),
        "type": gguf_type,
        "thresholds": thresholds,
        "llama_cpp_cpu": cpu_backend(),
        "summary": summary,
        "checks": checks,
        "passed": not failed,
        "reason": ("all checks pass" if not failed else "failed: " + ", ".join(failed)),
        "per_prompt": per_prompt,
    }


def parity_table(reports: list[dict], exports: dict[str, dict]):
    """One row per GGUF: size, export time, the parity numbers and the verdict."""
    import pandas as pd

    by_file = {m["inputs"]["gguf"]["path"]: m for m in exports.values()}
    rows = []
    for r in reports:
        exp = by_file.get(r["gguf"], {})
        s = r["summary"]
        rows.append(
            {
                "model": r["model"],
                "type": r["type"],
                "size_mb": round(exp.get("bytes", 0) / 1e6, 1),
                "export_s": exp.get("seconds"),
                "tokenization": "identical" if s["tokenization_identical"] else "DIFFERS",
                "mean_kl": s["mean_kl"],
                "top1": s["top1_agreement"],
                "greedy": s["greedy_agreement"],
                "max_logit_diff": s["max_abs_logit_diff"],
                "verdict": "PASS" if r["passed"] else "FAIL",
                "reason": r["reason"],
            }
        )
    return pd.DataFrame(rows)


def read_prompts(path: Path) -> list[str]:
    prompts = [line.rstrip("\n").replace("\\n", "\n") for line in Path(path).read_text().splitlines()]
    return [p for p in prompts if p.strip()]

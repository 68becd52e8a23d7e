"""Log-likelihoods with one forward pass per shared context (multiple-choice scoring).

lm-eval's HFLM scores every (context, continuation) request as its own sequence: an item with
four choices reads its question four times. (lm-eval's own TODO at
``HFLM._loglikelihood_tokens``: "lump together requests with the same context".) On the demo's
ARC-Easy that is 19.5k tokens through the model for 6.9k distinct ones.

``SharedContextHFLM`` keeps HFLM for everything else (loading, PEFT, tokenization, request
building, generation) and replaces only ``_loglikelihood_tokens``: requests are grouped by their
context tokens, and each group becomes one sequence - the context, then every continuation
(less its last token) - with a 4-D attention mask under which each continuation sees the context
and itself only, and position ids that restart after the context for each continuation. So
each token of a continuation is computed exactly as in HFLM's own sequence (same positions, same
visible tokens), the context once, and groups are batched (``batch_size`` sequences a pass) so the
matmuls stay large. Scores agree with HFLM's to float rounding (tests/test_shared_context.py
checks every request; bench/eval_profile.py compares the per-item choices on the real model).
Requests longer than the model's window go through HFLM's own left-truncating path.

Only the positions that score a continuation go through the vocabulary projection (a fifth of
a 135M model's FLOPs per token; ARC-Easy's packed sequences need it at ~1/3 of their positions).

Generation (``_model_generate``) shares the same way: a batch's common prompt prefix runs once
and decoding continues every row from its cache. Greedy decoding runs in ``_greedy``, a loop
that makes HF generate's own model calls and drops each row from the batch when it finishes,
where HF generate decodes every row until the longest answer ends (see the methods).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from lm_eval.models.huggingface import HFLM

log = logging.getLogger(__name__)


class SharedContextHFLM(HFLM):
    """HFLM whose log-likelihood requests share one forward pass per distinct context."""

    def _forward_params(self):
        import inspect

        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return inspect.signature(model.forward).parameters

    def _takes_positions(self) -> bool:
        """Packing needs explicit position ids (models that derive positions from the mask or
        use ALiBi, e.g. BLOOM, would see a choice's distance to the context shifted)."""
        return "position_ids" in self._forward_params()

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        if self.backend != "causal" or not self._takes_positions():
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        results: list = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, (_, ctx, _cont) in enumerate(requests):
            groups.setdefault(tuple(ctx), []).append(i)
        packed, long = [], []
        for ctx, idxs in groups.items():
            width = len(ctx) + sum(len(requests[i][2]) - 1 for i in idxs)
            if not ctx or any(not requests[i][2] for i in idxs) or width > self.max_length:
                long += idxs
            else:
                packed.append((list(ctx), idxs, width))
        if long:  # HFLM truncates these from the left: its own path, unchanged
            for i, r in zip(
                long,
                super()._loglikelihood_tokens(
                    [requests[i] for i in long], disable_tqdm=True, override_bs=override_bs
                ),
            ):
                results[i] = r
        for batch in self._batches(packed):
            scores = self._score_packed([(ctx, [requests[i][2] for i in idxs]) for ctx, idxs, _ in batch])
            for (_, idxs, _), group_scores in zip(batch, scores):
                for i, r in zip(idxs, group_scores):
                    results[i] = r
                    if requests[i][0] is not None:  # as HFLM (rolling windows: cached by the caller)
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], r)
        log.debug("%d log-likelihood requests: %d distinct contexts", len(requests), len(groups))
        return results

    def _batches(self, packed: list) -> list[list]:
        """Packed groups, longest first, in batches of up to ``batch_size`` sequences (at most
        16: every position's logits are held, rows x width x vocab floats); a batch also ends
        where the next sequence is under 3/4 of the batch's width (padding is compute)."""
        size = min(self.batch_size, 16) if isinstance(self.batch_size, int) and self.batch_size > 0 else 16
        batches: list[list] = []
        for group in sorted(packed, key=lambda g: -g[2]):
            if batches and len(batches[-1]) < size and group[2] * 4 >= batches[-1][0][2] * 3:
                batches[-1].append(group)
            else:
                batches.append([group])
        return batches

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        """HF generate, with the batch's common prompt prefix (a chat template's system prompt,
        few-shot examples) computed once: its KV cache is repeated over the batch and generation
        continues from it. The layout lm-eval expects is kept - prefix, then each row's rest
        left-padded, as long as the left-padded context - and the positions are the same (the
        padding moves between prefix and rest, masked), so the tokens generated are the same.
        Greedy decoding (every benchmark's default) runs in ``_greedy``, which drops each row
        from the batch once it is finished; sampling goes to HF generate."""
        import os

        import torch

        attn = generation_kwargs.get("attention_mask")
        if attn is None or "past_key_values" in generation_kwargs or not self._takes_positions():
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        greedy = self._greedy_only(generation_kwargs)
        rows = [context[b][attn[b].bool()].tolist() for b in range(context.shape[0])]
        shared = min(len(os.path.commonprefix(rows)), min(len(r) for r in rows) - 1)
        if context.shape[0] < 2 or shared < 8:  # nothing shared worth a separate pass
            if greedy:
                return self._greedy(context, attn, None, 0, max_length, stop)
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        dev, batch = context.device, context.shape[0]
        with torch.no_grad():
            cache = self.model(
                input_ids=torch.tensor([rows[0][:shared]], device=dev), use_cache=True, logits_to_keep=1
            ).past_key_values
        cache.batch_repeat_interleave(batch)
        width = context.shape[1] - shared  # the longest rest (lm-eval's padded width less the prefix)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        rest = torch.tensor([[pad] * (width - len(r) + shared) + r[shared:] for r in rows], device=dev)
        rest_mask = torch.tensor(
            [[0] * (width - len(r) + shared) + [1] * (len(r) - shared) for r in rows],
            device=dev,
            dtype=attn.dtype,
        )
        ids = torch.cat([torch.tensor([rows[0][:shared]] * batch, device=dev), rest], dim=1)
        mask = torch.cat([torch.ones((batch, shared), device=dev, dtype=attn.dtype), rest_mask], dim=1)
        if greedy:
            return self._greedy(ids, mask, cache, shared, max_length, stop)
        generation_kwargs["attention_mask"] = mask
        return super()._model_generate(ids, max_length, stop, past_key_values=cache, **generation_kwargs)

    # generation_config fields that change greedy decoding's choice (HF's logits processors) or
    # its search; any of them set, and generation goes to HF generate
    _PROCESSORS: ClassVar[dict] = {
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "encoder_no_repeat_ngram_size": 0,
        "bad_words_ids": None,
        "min_length": 0,
        "min_new_tokens": None,
        "suppress_tokens": None,
        "begin_suppress_tokens": None,
        "forced_bos_token_id": None,
        "forced_eos_token_id": None,
        "sequence_bias": None,
        "exponential_decay_length_penalty": None,
        "num_beams": 1,
        "max_new_tokens": None,
        "logits_processor": None,
        "watermarking_config": None,
    }

    def _greedy_only(self, kwargs: dict) -> bool:
        """Plain greedy decoding: no sampling, no other generation arguments, and nothing in the
        model's generation_config that would process the logits."""
        if set(kwargs) - {"attention_mask", "do_sample", "temperature"}:
            return False
        if kwargs.get("do_sample") or kwargs.get("temperature") not in (None, 0, 0.0):
            return False
        gc = getattr(self.model, "generation_config", None)
        return (
            gc is not None
            and "logits_to_keep" in self._forward_params()
            and all(getattr(gc, k, None) in (None, v) for k, v in self._PROCESSORS.items())
        )

    def _greedy(self, ids, mask, cache, start: int, max_length: int, stop: list[str]):
        """Greedy decoding that drops a row from the batch once it has finished (its EOS, or a
        stop string in its text), as HF generate does not: there the whole batch decodes until
        its longest answer ends, and on the demo's GSM8K (25 items, <= 96 tokens) that was 2,400
        row-steps for ~550 answer tokens. Each step runs the model exactly as HF generate's greedy
        search does (the same inputs, positions, mask - dropped when it has no padding, as HF
        does - and cache), so each row's tokens are HF's until it stops; lm-eval then cuts the
        text at the first stop string, so the text is the same. ``ids``/``mask`` are the whole
        left-padded batch, ``cache`` holds its first ``start`` positions (or is None).
        Returns the ids followed by the generated tokens (finished rows padded), as generate."""
        import torch

        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(eos, default=0)
        batch, width = ids.shape
        out = torch.full((batch, max(max_length - width, 0)), pad, dtype=ids.dtype, device=ids.device)
        pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        keep_mask = not bool(mask.all())
        live = torch.arange(batch, device=ids.device)
        inp, inp_pos, n = ids[:, start:], pos[:, start:], 0
        with torch.no_grad():
            for step in range(out.shape[1]):
                res = self.model(
                    input_ids=inp,
                    attention_mask=mask if keep_mask else None,
                    position_ids=inp_pos,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                cache, nxt = res.past_key_values, res.logits[:, -1].argmax(-1)
                out[live, step] = nxt
                n = step + 1
                texts = self.tokenizer.batch_decode(out[live, :n].tolist(), skip_special_tokens=False)
                done = torch.tensor(
                    [t in eos or any(s and s in text for s in stop) for t, text in zip(nxt.tolist(), texts)],
                    device=ids.device,
                )
                if bool(done.all()):
                    break
                last = inp_pos[:, -1:]
                if bool(done.any()):
                    kept = (~done).nonzero().squeeze(1)
                    cache.batch_select_indices(kept)
                    live, nxt, mask, last = live[kept], nxt[kept], mask[kept], last[kept]
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
                inp, inp_pos = nxt[:, None], last + 1
        return torch.cat([ids, out[:, :n]], dim=1)

    def _score_packed(
        self, groups: list[tuple[list[int], list[list[int]]]]
    ) -> list[list[tuple[float, bool]]]:
        """(sum of log-probs, greedy?) of each continuation after its context, for a batch of
        (context, continuations) groups packed one sequence each."""
        import torch
        import torch.nn.functional as F

        rows, where = [], []
        for ctx, conts in groups:
            toks, pos, seg, at = list(ctx), list(range(len(ctx))), [-1] * len(ctx), []
            for j, cont in enumerate(conts):
                start = len(toks)
                toks += cont[:-1]
                pos += range(len(ctx), len(ctx) + len(cont) - 1)
                seg += [j] * (len(cont) - 1)
                # the positions whose next-token logits score cont: the context's last, then its own
                at.append([len(ctx) - 1] + list(range(start, start + len(cont) - 1)))
            rows.append((toks, pos, seg))
            where.append(at)
        width = max(len(t) for t, _, _ in rows)
        dtype = next(self.model.parameters()).dtype
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        pos_ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.full((len(rows), 1, width, width), torch.finfo(dtype).min, dtype=dtype)
        for b, (toks, pos, seg) in enumerate(rows):
            n = len(toks)
            ids[b, :n] = torch.tensor(toks)
            pos_ids[b, :n] = torch.tensor(pos)
            s = torch.tensor(seg)
            # causal, and a continuation sees the context and itself, never another continuation
            allowed = torch.tril(torch.ones(n, n, dtype=torch.bool)) & (
                (s[None, :] == -1) | (s[:, None] == s[None, :])
            )
            mask[b, 0, :n, :n].masked_fill_(allowed, 0.0)
            pad = torch.arange(n, width)
            mask[b, 0, pad, pad] = 0.0  # padding attends to itself (no all-masked rows); never read
        # the vocabulary projection only where a continuation is scored (the context's last
        # position and each continuation's own): on ARC-Easy ~1/3 of the positions, and the
        # projection is a fifth of a 135M model's FLOPs per token
        need = torch.zeros((len(rows), width), dtype=torch.bool)
        for b, at in enumerate(where):
            for positions in at:
                need[b, positions] = True
        row_of = torch.full((len(rows), width), -1, dtype=torch.long)
        row_of[need] = torch.arange(int(need.sum()))
        kw = {
            "input_ids": ids.to(self.device),
            "attention_mask": mask.to(self.device),
            "position_ids": pos_ids.to(self.device),
        }
        with torch.no_grad():
            try:
                logits = self.model(**kw, logits_to_keep=need.to(self.device)).logits
            except (TypeError, IndexError, RuntimeError):  # a model without a positions mask for it
                logits = None
            if logits is None or tuple(logits.shape) != (int(need.sum()), logits.shape[-1]):
                logits = self.model(**kw).logits[need.to(self.device)]
        out = []
        for b, (_ctx, conts) in enumerate(groups):
            group = []
            for cont, at in zip(conts, where[b]):
                lp = F.log_softmax(logits[row_of[b, at]], dim=-1, dtype=self.softmax_dtype)
                target = torch.tensor(cont, device=lp.device)
                greedy = bool((lp.argmax(dim=-1) == target).all())
                group.append((float(lp.gather(-1, target[:, None]).sum()), greedy))
            out.append(group)
        return out

"""PEFT adapters (LoRA, DoRA, rsLoRA, QLoRA) trained with TRL: SFTTrainer or DPOTrainer.

We call TRL directly and only add what it does not record for us: the resolved
recipe, a loss curve, tokens/s and peak memory in ``metrics.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import resource
import shutil
import time
from pathlib import Path

from .chat_template import training_template
from .distributed import world_size
from .errors import DeltaflowError
from .io import sha256_text
from .provenance import device_class, output_versions
from .vocab import (
    adapter_has_tokenizer,
    add_tokens,
    expose_token_rows_to_fused_head,
    extend_embeddings,
    trainable_token_indices,
)

log = logging.getLogger(__name__)


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


RL_LOG_KEYS = ("reward", "rewards/", "kl", "completions/mean_length", "frac_reward_zero_std", "entropy")


def _loss_callback(curve: list, eval_curve: list):
    from transformers import TrainerCallback

    class LossCurve(TrainerCallback):
        """Collect logged losses; stop with a clear error on a non-finite loss."""

        start_time = time.time()
        start_tokens = 0  # tokens seen before this attempt (restored from a checkpoint when resuming)
        record_eval = True  # off while DPO's margin is measured on the training pairs
        group_stats = None  # GRPO: rewards.GroupStats, read at every logging step

        def on_train_begin(self, args, state, control, **kw):
            self.start_time = time.time()
            self.start_tokens = state.num_input_tokens_seen

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "eval_loss" in logs and self.record_eval:
                if eval_curve and eval_curve[-1]["step"] == state.global_step:
                    eval_curve.pop()  # an epoch arm at an eval_every step: evaluated twice, same weights
                eval_curve.append({"step": state.global_step, "eval_loss": float(logs["eval_loss"])})
                log.info(
                    "step %d/%d validation loss %.4f", state.global_step, state.max_steps, logs["eval_loss"]
                )
            if not logs or "loss" not in logs:
                return
            loss = float(logs["loss"])
            curve.append(
                {
                    "step": state.global_step,
                    "loss": loss,
                    "learning_rate": logs.get("learning_rate"),
                    "tokens_seen": state.num_input_tokens_seen,
                    "elapsed_s": round(time.time() - self.start_time, 3),
                }
            )
            # GRPO: TRL's reward per function, KL, completion length; our group statistics
            rl = {
                k: float(v)
                for k, v in logs.items()
                if k.startswith(RL_LOG_KEYS) and isinstance(v, (int, float))
            }
            if rl:
                curve[-1]["rl"] = rl
            if self.group_stats is not None:
                curve[-1]["groups"] = self.group_stats.take()
                curve[-1]["reward_hacking"] = self.group_stats.take_hacked()
                if curve[-1]["reward_hacking"]:
                    log.warning(
                        "step %d: %d completions gamed a code reward's tests (ended the run before "
                        "the tests finished, or compared an always-equal value); they scored 0",
                        state.global_step,
                        curve[-1]["reward_hacking"],
                    )
            log.info("step %d/%d loss %.4f", state.global_step, state.max_steps, loss)
            if not math.isfinite(loss):
                good = max((c["step"] for c in curve if math.isfinite(c["loss"])), default=0)
                dropped = (
                    _drop_checkpoints_after(Path(args.output_dir), good)
                    if state.is_world_process_zero
                    else "by the main process"
                )
                raise DeltaflowError(
                    f"non-finite training loss {loss} at step {state.global_step} (the last finite "
                    f"loss was logged at step {good}); the run stops here. Checkpoints saved after "
                    f"step {good} were removed ({dropped or 'none'}); the last good one stays in "
                    f"{args.output_dir}. Lower the learning rate (a changed recipe starts over) or "
                    "check the data"
                )

    return LossCurve()


def _drop_checkpoints_after(scratch: Path, step: int) -> list[str]:
    """Remove trainer checkpoints and eval arms saved after ``step`` (their weights may already
    be non-finite: the loss is only seen at logging steps). Returns what was removed."""
    gone = []
    for d in sorted(scratch.glob("checkpoint-*")):
        if int(d.name.split("-")[1]) > step:
            shutil.rmtree(d)
            gone.append(d.name)
    for d in sorted((scratch / "arms").glob("*")):
        arm = d / "arm.json"
        if arm.exists() and json.loads(arm.read_text())["step"] > step:
            shutil.rmtree(d)
            gone.append(f"arms/{d.name}")
    return gone


# what torch.multinomial raises when the logits it samples from are inf/NaN
_NONFINITE_SAMPLING = "probability tensor contains either `inf`, `nan` or element < 0"


def _train(trainer, objective: str, scratch: Path, resume_step: int | None):
    """trainer.train, resumed from ``checkpoint-<resume_step>`` when given. GRPO samples before
    it computes a loss: weights that overflowed at step N show first as non-finite logits while
    the completions of step N+1 are sampled, not as a non-finite loss. That is stopped like a
    non-finite loss (a clear error; checkpoints from step N on removed, as their weights are
    the broken ones) instead of torch's bare RuntimeError and a resume from broken weights."""
    try:
        return trainer.train(
            resume_from_checkpoint=str(scratch / f"checkpoint-{resume_step}") if resume_step else None
        )
    except RuntimeError as err:
        if objective != "grpo" or _NONFINITE_SAMPLING not in str(err):
            raise
        step = trainer.state.global_step
        good = max(0, step - 1)
        dropped = (
            _drop_checkpoints_after(scratch, good)
            if trainer.is_world_process_zero()
            else "by the main process"
        )
        raise DeltaflowError(
            f"non-finite model outputs while sampling the completions of step {step + 1}: the weights "
            f"after step {step} overflowed (inf/NaN logits); the run stops here. Checkpoints saved after "
            f"step {good} were removed ({dropped or 'none'}). Lower the learning rate (a changed recipe "
            "starts over) or check the rewards"
        ) from err


def _checkpoint_callback(arms_dir: Path, every: int | str | None, save_adapter):
    """Save the adapter every ``every`` steps to ``arms_dir/step<N>``, or after each epoch but
    the last to ``arms_dir/epoch<N>`` with ``every == "epoch"`` (eval arms).

    Only the adapter weights are written (what evaluation needs), not optimizer state, plus
    ``arm.json`` with the step and epoch. ``arms_dir`` lives in the resume folder, so arms
    saved before a kill survive the resume.
    """
    from transformers import TrainerCallback

    def save(model, state, tag):
        if not state.is_world_process_zero:  # one writer when training on several processes
            return
        save_adapter(model, arms_dir / tag)
        (arms_dir / tag / "arm.json").write_text(
            json.dumps({"step": state.global_step, "epoch": round(float(state.epoch or 0), 4)})
        )
        log.info("saved checkpoint %s (step %d)", tag, state.global_step)

    class SaveAdapter(TrainerCallback):
        # With a validation set, every arm also gets its validation loss (HF evaluates right
        # after these callbacks when control.should_evaluate is set).
        def on_step_end(self, args, state, control, model=None, **kw):
            step = state.global_step
            if isinstance(every, int) and step % every == 0 and step < state.max_steps:
                save(model, state, f"step{step}")
                control.should_evaluate = args.eval_strategy != "no"
            return control

        def on_epoch_end(self, args, state, control, model=None, **kw):
            epoch = round(float(state.epoch or 0))
            if every == "epoch" and epoch < args.num_train_epochs:
                save(model, state, f"epoch{epoch}")
                control.should_evaluate = args.eval_strategy != "no"
            return control

    return SaveAdapter()


def peft_config_for(recipe: dict, token_indices: dict | None = None):
    """PEFT LoraConfig from a recipe: method lora | dora, use_rslora; ``token_indices``: the
    embedding rows of new tokens to train (vocab.trainable_token_indices)."""
    from peft import LoraConfig

    return LoraConfig(
        r=recipe["r"],
        lora_alpha=recipe["alpha"],
        lora_dropout=recipe["dropout"],
        target_modules=recipe["target_modules"],
        task_type="CAUSAL_LM",
        use_dora=recipe["method"] == "dora",
        use_rslora=recipe["use_rslora"],
        trainable_token_indices=token_indices or None,
    )


def train_precision(recipe: dict, device: str) -> str:
    """fp32 | bf16 | fp16: the recipe's precision, ``auto`` = fp32 on CPU and bf16 on CUDA."""
    precision = recipe["precision"]
    if precision == "auto":
        return "bf16" if device == "cuda" else "fp32"
    if precision == "fp16" and device != "cuda":
        raise DeltaflowError(
            "precision fp16 (mixed precision with a loss scaler) needs a CUDA GPU; "
            f"this job runs on {device}. Use auto, fp32 or bf16"
        )
    return precision


def load_base_for_training(base_dir: Path, recipe: dict, device: str):
    """The base model in the training precision (fp32 on CPU by default, bf16 on CUDA), or
    4-bit NF4 for QLoRA (CUDA + bitsandbytes; compute in bf16, or fp16 with precision fp16)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if recipe["load_in_4bit"]:
        if device != "cuda" or not torch.cuda.is_available():
            raise DeltaflowError(
                "QLoRA (load_in_4bit) needs a CUDA GPU; this job runs on "
                f"device '{device}' (cuda available: {torch.cuda.is_available()}). "
                "Set train.device: cuda on a GPU node, or load_in_4bit: false"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise DeltaflowError(
                "QLoRA (load_in_4bit) needs bitsandbytes: .venv/bin/python -m pip install bitsandbytes"
            ) from exc
        from transformers import BitsAndBytesConfig

        compute = torch.float16 if train_precision(recipe, device) == "fp16" else torch.bfloat16
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True,
        )
        return AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=quant, dtype=compute)
    return AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype[train_precision(recipe, device)])


def split_validation(rows: list[dict], n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out ``n`` distinct rows (by id, seeded) as validation: (train, validation).

    A mixture repeats rows (multipliers); every copy of a held-out row leaves the training
    set, so the validation loss is on rows the adapter never trained on.
    """
    import random

    if n <= 0:
        return rows, []
    ids = sorted({r["id"] for r in rows})
    if n >= len(ids):
        raise DeltaflowError(
            f"val_rows {n} leaves no training rows: the mixture has {len(ids)} distinct rows; lower val_rows"
        )
    held = set(random.Random(seed).sample(ids, n))
    val, seen = [], set()
    for r in rows:
        if r["id"] in held and r["id"] not in seen:
            seen.add(r["id"])
            val.append(r)
    return [r for r in rows if r["id"] not in held], val


def total_steps(recipe: dict, n_examples: int) -> int:
    """Optimizer steps of a run: max_steps, or epochs x batches per epoch (as HF Trainer counts
    them: ceil(examples / batch) batches, an optimizer step every grad_accum of them)."""
    if recipe["max_steps"]:
        return recipe["max_steps"]
    batches = math.ceil(n_examples / recipe["batch_size"])
    return recipe["epochs"] * max(1, math.ceil(batches / recipe["grad_accum"]))


def resume_every(recipe: dict, steps: int) -> int:
    """Steps between full trainer checkpoints (adapter + optimizer + RNG) for resuming."""
    every = recipe["save_every"]
    return recipe["resume_every"] or (every if isinstance(every, int) else None) or max(1, steps // 5)


def training_resume_key(inputs: dict, *, device: str, versions: dict | None = None) -> str:
    """The key a resume checkpoint is written under: the training inputs (data, recipe, base
    weights, ...), the device and its class, and the versions of the packages that compute the
    training (a checkpoint from other versions or another kind of device is never resumed)."""
    return sha256_text(
        json.dumps(
            {
                **inputs,
                "device": device,
                "device_class": device_class(device),
                "versions": versions if versions is not None else output_versions(),
            },
            sort_keys=True,
            default=str,
        )
    )


def prepare_resume_dir(resume_dir: Path, key: str) -> int | None:
    """The step to resume from, or None. A folder made for other inputs is wiped first.

    ``key`` identifies the training inputs (data, recipe, base weights, device); a checkpoint
    from different inputs is never resumed.
    """
    key_file = resume_dir / "key.txt"
    if resume_dir.exists() and (not key_file.exists() or key_file.read_text() != key):
        log.info("discarding %s: it was written for other inputs", resume_dir)
        shutil.rmtree(resume_dir)
    resume_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    steps = []
    for ckpt in resume_dir.glob("checkpoint-*"):
        if (ckpt / "trainer_state.json").exists():
            steps.append(int(ckpt.name.split("-")[1]))
        else:  # a save the kill interrupted: never resumed (HF would pick it as the newest)
            log.info("discarding %s: an incomplete checkpoint (no trainer_state.json)", ckpt)
            shutil.rmtree(ckpt)
    return max(steps) if steps else None


def per_process_batch(recipe: dict, world: int) -> int:
    """Each process's share of the recipe's (global) batch."""
    if recipe["batch_size"] % world:
        raise DeltaflowError(
            f"batch_size {recipe['batch_size']} does not split over {world} processes; "
            "make it a multiple of train.processes"
        )
    return recipe["batch_size"] // world


def _parallel_args(device: str, world: int, strategy: str) -> dict:
    """TrainingArguments for a job on ``world`` processes (deltaflow.distributed)."""
    if world == 1:
        return {}
    args = {
        "ddp_backend": "gloo" if device == "cpu" else "nccl",
        # PEFT freezes the base: every trainable parameter gets a gradient each step
        "ddp_find_unused_parameters": False,
    }
    if strategy == "fsdp":  # parameters, gradients and optimizer state sharded over the GPUs
        args.update(
            fsdp="full_shard auto_wrap",
            fsdp_config={
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "use_orig_params": False,
                "cpu_ram_efficient_loading": True,
                "sync_module_states": True,
            },
        )
    return args


def _training_args(
    recipe: dict,
    device: str,
    scratch: Path,
    resumable: bool,
    steps: int,
    validate: bool,
    world: int = 1,
    strategy: str = "ddp",
) -> dict:
    """TrainingArguments shared by the SFT and DPO configs. ``steps``: the run's optimizer
    steps (total_steps); ``validate``: a validation set is passed (val_rows); ``world``: the
    processes the job trains on (the batch is global: each takes its share)."""
    precision = train_precision(recipe, device)
    epochs = recipe["epochs"]
    checkpoint_every = resume_every(recipe, steps)
    eval_every = recipe["eval_every"] or recipe["logging_steps"]
    return dict(
        **_parallel_args(device, world, strategy),
        output_dir=str(scratch),
        max_steps=-1 if epochs else recipe["max_steps"],
        num_train_epochs=epochs or 1,
        per_device_train_batch_size=per_process_batch(recipe, world),
        per_device_eval_batch_size=per_process_batch(recipe, world),
        gradient_accumulation_steps=recipe["grad_accum"],
        learning_rate=recipe["learning_rate"],
        lr_scheduler_type=recipe["lr_scheduler"],
        # with epochs, a ratio (< 1) that HF applies to the step count it computes itself
        warmup_steps=(min(recipe["warmup_ratio"], 0.9999) if epochs else int(recipe["warmup_ratio"] * steps)),
        logging_steps=recipe["logging_steps"],
        # HF's default filter drops NaN/inf step losses from the logged average (a NaN run
        # logs 0.0): the non-finite-loss stop must see them.
        logging_nan_inf_filter=False,
        max_length=recipe["max_length"],
        seed=recipe["seed"],
        data_seed=recipe["seed"],
        # TRL's bf16 + gradient checkpointing defaults are 2x slower on CPU (FACTS.md).
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=False,
        use_cpu=device == "cpu",
        save_strategy="steps" if resumable else "no",
        save_steps=checkpoint_every,
        # A resume needs only the newest checkpoint, but the loss is seen at logging steps
        # only: keep every checkpoint since the last one logged, so that when a non-finite
        # loss shows up the last checkpoint before it (the last good one) is still there.
        save_total_limit=1 + math.ceil(recipe["logging_steps"] / checkpoint_every),
        eval_strategy="steps" if validate else "no",
        eval_steps=eval_every,
        report_to=[],
        # real tokens, not padding: what tokens/s and the packing comparison should count
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        dataloader_num_workers=0,
        # Batches of similar length: on CPU the cost is padded tokens, and a mix of short
        # task rows with long replay rows otherwise pads most batches to the longest row.
        train_sampling_strategy=recipe["sampling"],
    )


def preference_rows(rows: list[dict]) -> list[dict]:
    """Mixture preference rows -> TRL's conversational prompt / chosen / rejected."""
    out = []
    for r in rows:
        if not (r.get("chosen") and r.get("rejected") and r.get("messages")):
            continue
        out.append(
            {
                "prompt": r["messages"],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
        )
    return out


def _margin(trainer, dataset, loss_cb) -> dict:
    """TRL's own implicit-reward statistics on ``dataset`` (chosen vs rejected)."""
    loss_cb.record_eval = False  # not a validation loss
    try:
        m = trainer.evaluate(eval_dataset=dataset)
    finally:
        loss_cb.record_eval = True
    return {
        k.removeprefix("eval_"): round(float(v), 6)
        for k, v in m.items()
        if k.startswith("eval_rewards/") or k == "eval_loss"
    }


def _best_by_val_loss(arms: list[dict], eval_curve: list[dict], final_step: int) -> dict | None:
    """The saved adapter (arm tag, or "final") whose step has the lowest validation loss."""
    at = {c["step"]: c["eval_loss"] for c in eval_curve}
    cands = [(at[a["step"]], a["step"], a["tag"]) for a in arms if a["step"] in at]
    if final_step in at:
        cands.append((at[final_step], final_step, "final"))
    if not cands:
        return None
    loss, step, tag = min(cands)
    return {"tag": tag, "step": step, "val_loss": loss}


def _prepare_model(base_dir: Path, recipe: dict, device: str, init_dir: Path | None):
    """The tokenizer, the base (vocabulary extended for new tokens), the PEFT config (None when
    continuing ``init_dir``'s adapter, loaded trainable), the new token ids and the adapter saver."""
    from transformers import AutoTokenizer

    # continuing an adapter that brought new tokens: its tokenizer, and the base extended to it
    tok = AutoTokenizer.from_pretrained(init_dir if adapter_has_tokenizer(init_dir) else base_dir)
    model = load_base_for_training(base_dir, recipe, device)
    base_vocab = model.get_input_embeddings().weight.shape[0]
    extend_embeddings(model, len(tok))
    new_ids = (
        add_tokens(tok, model, recipe["new_tokens"]) if recipe["new_tokens"] and init_dir is None else []
    )
    if new_ids:
        log.info(
            "new tokens %s: ids %s, rows initialized to the mean embedding", recipe["new_tokens"], new_ids
        )
    peft_config = peft_config_for(recipe, trainable_token_indices(model, new_ids) if new_ids else None)
    # the tokenizer saved with the adapter (before the training chat-template patch)
    adapter_tok = copy.deepcopy(tok) if len(tok) > base_vocab else None

    def save_adapter(peft_model, path: Path, **kw):
        # The new rows are saved by PEFT (trainable tokens); the rest of the extended
        # embedding is the base's, rebuilt on load (vocab.load_base_for_adapter), not copied.
        peft_model.save_pretrained(path, save_embedding_layers=False, **kw)
        if adapter_tok is not None:
            adapter_tok.save_pretrained(path)

    if init_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_dir), is_trainable=True)
        peft_config = None  # the loaded adapter is trained further
    return tok, model, peft_config, new_ids, save_adapter


def _epoch_seeded(trainer_cls):
    """``trainer_cls`` whose length-grouped sampler draws each epoch's order from
    (data_seed, epoch) instead of torch's global RNG.

    HF's LengthGroupedSampler shuffles with the global generator when the epoch's iterator is
    made; a run resumed inside a later epoch restores the RNG of the checkpoint's step, not of
    that epoch's start, so the resumed epoch saw another order than the uninterrupted run
    (losses differed from the first resumed step). Seeding from (seed, epoch) through the
    ``set_epoch`` hook the Trainer calls every epoch (as accelerate's seedable random sampler
    does for ``sampling: random``) makes the order a function of the epoch alone."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
        def __init__(self, batch_size: int, lengths: list[int], seed: int):
            super().__init__(batch_size, lengths=lengths)
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def __iter__(self):
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))

    class Seeded(trainer_cls):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                # grouped by the global batch, so N processes' shares of each step are the
                # rows one process would take (accelerate deals batch i to process i mod N)
                return EpochSeededLengthGroupedSampler(
                    sampler.batch_size * self.args.world_size, list(sampler.lengths), seed
                )
            return sampler

    Seeded.__name__ = Seeded.__qualname__ = trainer_cls.__name__
    return Seeded


def _sft_trainer(
    model, tok, rows, val_rows, recipe, common, peft_config, callbacks, *, chat_template_path, **_
):
    """TRL's SFTTrainer on the rows' chat ``messages`` (assistant-only loss via the patched template)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if recipe["assistant_only_loss"]:
        override = Path(chat_template_path).read_text() if chat_template_path else None
        tok.chat_template = training_template(tok, override)
    train_rows = [{"messages": r["messages"]} for r in rows if r.get("messages")]
    if not train_rows:
        raise DeltaflowError("the mixture has no chat rows to train on")
    val = [{"messages": r["messages"]} for r in val_rows if r.get("messages")]
    args = SFTConfig(**common, assistant_only_loss=recipe["assistant_only_loss"], packing=recipe["packing"])
    trainer = _epoch_seeded(SFTTrainer)(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val) if val else None,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    return trainer, train_rows, {}


def _cpt_trainer(model, tok, rows, val_rows, recipe, common, peft_config, callbacks, **_):
    """Continued pretraining: TRL's SFTTrainer in language-modeling form (a ``text`` field: the
    loss on every token), rows packed into max_length sequences. Replay rows with chat
    ``messages`` are rendered to text with the tokenizer's chat template."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    def text_of(row):
        if row.get("text"):
            return row["text"]
        return tok.apply_chat_template(row["messages"], tokenize=False) if row.get("messages") else ""

    train_rows = [{"text": t} for t in map(text_of, rows) if t.strip()]
    if not train_rows:
        raise DeltaflowError("the mixture has no text to continue pretraining on")
    val = [{"text": t} for t in map(text_of, val_rows) if t.strip()]
    # packed sequences have no per-row lengths to group by
    # bfd_split: a document longer than max_length continues in the next sequences (chunked),
    # where TRL's default bfd would cut it off at max_length and drop the rest
    args = SFTConfig(
        **{**common, "train_sampling_strategy": "random"},
        packing=True,
        packing_strategy="bfd_split",
        dataset_text_field="text",
        assistant_only_loss=False,
        completion_only_loss=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val) if val else None,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    return (
        trainer,
        train_rows,
        {
            "text_rows": sum(1 for r in rows if r.get("text")),
            "replay_rows_as_text": sum(1 for r in rows if not r.get("text") and r.get("messages")),
        },
    )


def grpo_rows(rows: list[dict]) -> list[dict]:
    """Mixture rows -> GRPO prompts: the first user turn (conversational, TRL applies the chat
    template) and the reference answer the verifier rewards check against."""
    from .generation import prompt_text, reference, verification_doc

    out = []
    for r in rows:
        text = prompt_text(r)
        if text is None:
            continue
        answer = reference(r)
        out.append(
            {
                "prompt": [{"role": "user", "content": text}],
                "answer": "" if answer is None else str(answer),
                "answer_from": "label" if r.get("label") is not None else "assistant",
                "verify": json.dumps(verification_doc(r, text)),
                "row_id": str(r.get("id")),
            }
        )
    return out


def grpo_args(recipe: dict, common: dict, config_cls) -> dict:
    """GRPOConfig's keyword arguments: the common training arguments it has (an SFT-only one such
    as max_length is left out by GRPOConfig's own fields, not by a list here) and the recipe's
    GRPO keys. ``rollouts: vllm`` is TRL's colocated vLLM generation (CUDA only; the config
    refuses it elsewhere), so this is where that path is checked without a GPU."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config_cls)}
    args = {k: v for k, v in common.items() if k in fields}
    args.update(
        train_sampling_strategy="random",
        eval_strategy="no",
        num_generations=recipe["num_generations"],
        beta=recipe["kl_beta"],
        loss_type=recipe["loss_type"],
        max_completion_length=recipe["max_completion_length"],
        temperature=recipe["temperature"],
        reward_weights=[s["weight"] for s in recipe["rewards"]],
    )
    if recipe["rollouts"] == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise DeltaflowError(
                "recipe rollouts: vllm needs the vllm package in the training environment "
                "(TRL colocates it with the trainer); install vllm there or use rollouts: hf"
            )
        args.update(
            use_vllm=True,
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=recipe["vllm_gpu_memory_utilization"],
        )
    return args


def _grpo_trainer(
    model, tok, rows, val_rows, recipe, common, peft_config, callbacks, *, loss_cb, dirs=(), **_
):
    """TRL's GRPOTrainer: ``num_generations`` sampled completions per prompt, rewards from the
    registry's scorers (deltaflow.rewards), the group statistics recorded at every log."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from .rewards import GroupStats, check_reward_rows, reward_functions, reward_name

    train_rows = grpo_rows(rows)
    if not train_rows:
        raise DeltaflowError("the mixture has no prompts (rows with a user turn) for GRPO")
    specs = recipe["rewards"]
    check_reward_rows(specs, train_rows, dirs)
    stats = GroupStats(
        [reward_name(i, s) for i, s in enumerate(specs)],
        [s["weight"] for s in specs],
        recipe["num_generations"],
    )
    loss_cb.group_stats = stats
    args = GRPOConfig(**grpo_args(recipe, common, GRPOConfig))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_functions(specs, dirs, stats),
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tok,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    return (
        trainer,
        train_rows,
        {
            "rewards": [{**s, "name": reward_name(i, s)} for i, s in enumerate(specs)],
            "num_generations": recipe["num_generations"],
        },
    )


def rl_summary(curve: list[dict]) -> dict:
    """metrics.json's RL block: the reward curve per reward function, KL and completion length
    per logging step, and the group statistics summed over the run."""
    rl = [c for c in curve if "rl" in c]
    if not rl:
        return {}
    groups: dict = {}
    for c in curve:
        for k, v in (c.get("groups") or {}).items():
            if k != "mixed_share":
                groups[k] = groups.get(k, 0) + v
    total = sum(groups.values())
    first, last = rl[0]["rl"].get("reward"), rl[-1]["rl"].get("reward")
    return {
        "reward_curve": [
            {
                "step": c["step"],
                **c["rl"],
                **({"reward_hacking": c["reward_hacking"]} if "reward_hacking" in c else {}),
            }
            for c in rl
        ],
        "reward_first": first,
        "reward_last": last,
        "reward_hacking": sum(c.get("reward_hacking", 0) for c in curve),
        "groups": {**groups, "mixed_share": round(groups.get("mixed", 0) / total, 4) if total else None},
    }


def _dpo_trainer(model, tok, rows, val_rows, recipe, common, peft_config, callbacks, *, init_dir, **_):
    """TRL's DPOTrainer on chosen/rejected pairs, the reference being the base (adapters
    disabled) or, with ``reference: init``, the adapter the run continues."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    train_rows = preference_rows(rows)
    if not train_rows:
        raise DeltaflowError(
            "the mixture has no chosen/rejected pairs to train DPO on (use a `kind: preference` mixture)"
        )
    # HF's group_by_length sampler reads `input_ids`, which DPO's pair rows do not have
    args = DPOConfig(**{**common, "train_sampling_strategy": "random"}, beta=recipe["beta"])
    val = preference_rows(val_rows)
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val) if val else None,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    # Continuing an adapter, TRL keeps a frozen copy of it ("ref") as the reference. The
    # default anchors to the base instead: without the "ref" adapter TRL computes the
    # reference log-probs with adapters disabled, i.e. from the base model.
    if init_dir is not None and recipe["reference"] == "base":
        trainer.model.delete_adapter("ref")
    return (
        trainer,
        train_rows,
        {"reference": "init" if init_dir is not None and recipe["reference"] == "init" else "base"},
    )


def _examples_used(trainer, train_rows: list, recipe: dict) -> int:
    """How many training examples TRL kept: it drops those with no trainable tokens after
    truncation. (Packed, the dataset holds packed sequences, not rows, so its length says
    nothing about drops.)"""
    packed = getattr(trainer.args, "packing", False)  # SFT and CPT
    used = len(trainer.train_dataset) if not packed else len(train_rows)
    if packed:
        log.info(
            "packed %d rows into %d sequences of up to %d tokens",
            len(train_rows),
            len(trainer.train_dataset),
            recipe["max_length"],
        )
    if used < len(train_rows):
        log.warning(
            "TRL dropped %d of %d examples with no trainable tokens after truncation to max_length=%d",
            len(train_rows) - used,
            len(train_rows),
            recipe["max_length"],
        )
    return used


def _collect_arms(arms_dir: Path, out_dir: Path | None) -> list[dict]:
    """The checkpoint arms saved during training (save_every), copied under the adapter
    (``out_dir``; None: only listed, on processes other than the main one)."""
    saved = sorted(
        (
            {**json.loads((d / "arm.json").read_text()), "tag": d.name}
            for d in arms_dir.glob("*")
            if (d / "arm.json").exists()
        ),
        key=lambda a: a["step"],
    )
    for arm in saved if out_dir is not None else []:
        shutil.copytree(arms_dir / arm["tag"], out_dir / "checkpoints" / arm["tag"])
    return saved


def train_adapter(
    base_dir: Path,
    rows: list[dict],
    recipe: dict,
    out_dir: Path,
    *,
    device: str = "cpu",
    chat_template_path: str | None = None,
    init_dir: Path | None = None,
    resume_dir: Path | None = None,
    resume_key: str = "",
    strategy: str = "ddp",
    benchmark_dirs: tuple = (),
) -> dict:
    """Train a PEFT adapter on a mixture's rows and save it to ``out_dir``.

    Run under torchrun (deltaflow.distributed.launch), every process calls this: the batch is
    split over them (``strategy`` ddp or fsdp) and the main process writes the adapter.

    ``recipe`` is a validated config's recipe (defaults filled: config.schema_defaults).
    objective sft: TRL SFTTrainer on chat ``messages`` (assistant-only loss).
    objective cpt: TRL SFTTrainer on raw ``text`` (loss on every token, packed).
    objective grpo: TRL GRPOTrainer on the rows' prompts, rewards from deltaflow.rewards.
    objective dpo: TRL DPOTrainer on chosen/rejected pairs; the reference is the base model
    (adapters disabled, no second copy in memory) or, with ``reference: init``, the adapter
    the run starts from. ``init_dir``: continue training that adapter (a run's
    ``init_from``) instead of a fresh one.

    Returns the metrics dict (loss curve, tokens seen, tokens/s, peak memory, wall time, ...).
    """
    objective = recipe["objective"]
    wall0 = time.time()
    tok, model, peft_config, new_ids, save_adapter = _prepare_model(base_dir, recipe, device, init_dir)
    # TRL's checkpoints (adapter, optimizer, scheduler, RNG states, data position) go to a
    # folder beside the adapter, outside its atomic temporary folder: a killed job's next
    # attempt resumes from the last one (HF Trainer restores the RNG and skips the batches
    # already seen, so the data order is the same). The caller removes it once the adapter
    # is in place.
    scratch = resume_dir or out_dir / "_trainer"
    resume_step = prepare_resume_dir(scratch, resume_key) if resume_dir else None
    rows, val_rows = split_validation(rows, recipe["val_rows"], recipe["seed"])
    if val_rows:
        log.info(
            "validation: %d held-out rows (every copy left out of the %d training rows)",
            len(val_rows),
            len(rows),
        )
    common = _training_args(
        recipe,
        device,
        scratch,
        resumable=resume_dir is not None,
        steps=total_steps(recipe, len(rows)),
        validate=bool(val_rows),
        world=world_size(),
        strategy=strategy,
    )
    curve: list = []
    eval_curve: list = []
    loss_cb = _loss_callback(curve, eval_curve)
    arms_dir = scratch / "arms"
    callbacks = [loss_cb, _checkpoint_callback(arms_dir, recipe["save_every"], save_adapter)]
    build = {"sft": _sft_trainer, "dpo": _dpo_trainer, "cpt": _cpt_trainer, "grpo": _grpo_trainer}[objective]
    trainer, train_rows, extra = build(
        model,
        tok,
        rows,
        val_rows,
        recipe,
        common,
        peft_config,
        callbacks,
        chat_template_path=chat_template_path,
        init_dir=init_dir,
        loss_cb=loss_cb,
        dirs=benchmark_dirs,
    )
    expose_token_rows_to_fused_head(trainer.model)  # a no-op without new-token rows
    if objective == "dpo":
        extra["preference_before"] = _margin(trainer, trainer.train_dataset, loss_cb)
    used = _examples_used(trainer, train_rows, recipe)

    train_start = time.time()
    if resume_step:
        log.info("resuming from step %d (%s)", resume_step, scratch)
    result = _train(trainer, objective, scratch, resume_step)
    train_s = time.time() - train_start
    if val_rows and (not eval_curve or eval_curve[-1]["step"] != trainer.state.global_step):
        # the loss of the adapter actually saved (the last eval_every may fall before the end)
        trainer.evaluate()
    if objective == "dpo":
        extra["preference_after"] = _margin(trainer, trainer.train_dataset, loss_cb)
        log.info(
            "reward margin on the training pairs: %.4f -> %.4f",
            extra["preference_before"].get("rewards/margins", float("nan")),
            extra["preference_after"].get("rewards/margins", float("nan")),
        )
    main = trainer.is_world_process_zero()
    if main:
        save_adapter(trainer.model, out_dir, selected_adapters=["default"])
    saved = _collect_arms(arms_dir, out_dir if main else None)
    if resume_dir is None and main:
        shutil.rmtree(scratch, ignore_errors=True)
    tokens = int(trainer.state.num_input_tokens_seen)
    tokens_this_attempt = tokens - int(loss_cb.start_tokens)
    return {
        "objective": objective,
        "init_from": str(init_dir) if init_dir else None,
        "steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "final_loss": curve[-1]["loss"] if curve else None,
        "loss_curve": curve,
        "tokens_seen": tokens,
        "tokens_per_s": round(tokens_this_attempt / train_s, 2) if train_s > 0 else None,
        "train_s": round(train_s, 2),
        "wall_s": round(time.time() - wall0, 2),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "device": device,
        "processes": world_size(),
        "strategy": strategy if world_size() > 1 else None,
        "resumed_from_step": resume_step,
        "peft": {
            "method": recipe["method"],
            "use_rslora": recipe["use_rslora"],
            "load_in_4bit": recipe["load_in_4bit"],
        },
        "new_tokens": dict(zip(recipe["new_tokens"] or [], new_ids)),
        "checkpoints": [
            {
                **arm,
                "path": f"checkpoints/{arm['tag']}",
                "loss": next((c["loss"] for c in reversed(curve) if c["step"] <= arm["step"]), None),
                "val_loss": next((c["eval_loss"] for c in eval_curve if c["step"] == arm["step"]), None),
            }
            for arm in saved
        ],
        "epochs": round(float(trainer.state.epoch or 0), 4),
        "precision": train_precision(recipe, device),
        "eval_curve": eval_curve,
        "val_rows": len(val_rows),
        "val_loss": eval_curve[-1]["eval_loss"] if eval_curve else None,
        # the "selected" adapter: the one saved (a checkpoint arm or the final one)
        # with the lowest validation loss; the tables' selection decides on benchmarks
        "best_by_val_loss": _best_by_val_loss(saved, eval_curve, int(trainer.state.global_step)),
        "train_rows": len(train_rows),
        "train_examples_used": used,
        "train_examples_dropped_no_target_tokens": len(train_rows) - used,
        **rl_summary(curve),
        **extra,
    }

"""PEFT adapters (LoRA, DoRA, rsLoRA, QLoRA) trained with TRL: SFTTrainer or DPOTrainer.

We call TRL directly and only add what it does not record for us: the resolved
recipe, a loss curve, tokens/s and peak memory in ``metrics.json``.
"""

from __future__ import annotations

import logging
import math
import resource
import shutil
import time
from pathlib import Path

from .chat_template import training_template
from .errors import DeltaflowError

log = logging.getLogger(__name__)


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _loss_callback(curve: list):
    from transformers import TrainerCallback

    class LossCurve(TrainerCallback):
        """Collect logged losses; stop with a clear error on a non-finite loss."""

        start_time = time.time()
        start_tokens = 0  # tokens seen before this attempt (restored from a checkpoint when resuming)

        def on_train_begin(self, args, state, control, **kw):
            self.start_time = time.time()
            self.start_tokens = state.num_input_tokens_seen

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs:
                return
            loss = float(logs["loss"])
            curve.append({"step": state.global_step, "loss": loss,
                          "learning_rate": logs.get("learning_rate"),
                          "tokens_seen": state.num_input_tokens_seen,
                          "elapsed_s": round(time.time() - self.start_time, 3)})
            log.info("step %d/%d loss %.4f", state.global_step, state.max_steps, loss)
            if not math.isfinite(loss):
                raise DeltaflowError(
                    f"non-finite training loss {loss} at step {state.global_step}; the run stops here "
                    f"and its last good checkpoint stays in {args.output_dir}. Lower the learning "
                    "rate (a changed recipe starts over) or check the data")

    return LossCurve()


def _checkpoint_callback(arms_dir: Path, every: int | None):
    """Save the adapter every ``every`` steps to ``arms_dir/step<N>`` (eval arms).

    Only the adapter weights are written (what evaluation needs), not optimizer state.
    ``arms_dir`` lives in the resume folder, so arms saved before a kill survive the resume.
    """
    from transformers import TrainerCallback

    class SaveAdapter(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            step = state.global_step
            if every and step % every == 0 and step < state.max_steps:
                model.save_pretrained(arms_dir / f"step{step}")
                log.info("saved checkpoint step%d", step)

    return SaveAdapter()


def peft_config_for(recipe: dict):
    """PEFT LoraConfig from a recipe: method lora | dora, use_rslora."""
    from peft import LoraConfig

    return LoraConfig(r=recipe["r"], lora_alpha=recipe["alpha"], lora_dropout=recipe["dropout"],
                      target_modules=recipe["target_modules"], task_type="CAUSAL_LM",
                      use_dora=recipe.get("method", "lora") == "dora",
                      use_rslora=recipe.get("use_rslora", False))


def load_base_for_training(base_dir: Path, recipe: dict, device: str):
    """The base model: fp32 on CPU, bf16 on CUDA, 4-bit NF4 for QLoRA (CUDA + bitsandbytes)."""
    import torch
    from transformers import AutoModelForCausalLM

    if recipe.get("load_in_4bit"):
        if device != "cuda" or not torch.cuda.is_available():
            raise DeltaflowError("QLoRA (load_in_4bit) needs a CUDA GPU; this job runs on "
                                 f"device '{device}' (cuda available: {torch.cuda.is_available()}). "
                                 "Set train.device: cuda on a GPU node, or load_in_4bit: false")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise DeltaflowError("QLoRA (load_in_4bit) needs bitsandbytes: "
                                 ".venv/bin/python -m pip install bitsandbytes") from exc
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)
        return AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=quant, dtype=torch.bfloat16)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)


def resume_every(recipe: dict) -> int:
    """Steps between full trainer checkpoints (adapter + optimizer + RNG) for resuming."""
    return recipe.get("resume_every") or recipe.get("save_every") or max(1, recipe["max_steps"] // 5)


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
    steps = [int(p.name.split("-")[1]) for p in resume_dir.glob("checkpoint-*")
             if (p / "trainer_state.json").exists()]
    return max(steps) if steps else None


def _training_args(recipe: dict, device: str, scratch: Path, resumable: bool) -> dict:
    """TrainingArguments shared by the SFT and DPO configs."""
    return dict(
        output_dir=str(scratch),
        max_steps=recipe["max_steps"],
        per_device_train_batch_size=recipe["batch_size"],
        per_device_eval_batch_size=recipe["batch_size"],
        gradient_accumulation_steps=recipe["grad_accum"],
        learning_rate=recipe["learning_rate"],
        lr_scheduler_type=recipe["lr_scheduler"],
        warmup_steps=int(recipe["warmup_ratio"] * recipe["max_steps"]),
        logging_steps=recipe["logging_steps"],
        max_length=recipe["max_length"],
        seed=recipe["seed"],
        data_seed=recipe["seed"],
        # TRL's bf16 + gradient checkpointing defaults are 2x slower on CPU (FACTS.md).
        bf16=device == "cuda",
        gradient_checkpointing=False,
        use_cpu=device == "cpu",
        save_strategy="steps" if resumable else "no",
        save_steps=resume_every(recipe),
        save_total_limit=1,  # the newest checkpoint is all a resume needs
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
        out.append({"prompt": r["messages"],
                    "chosen": [{"role": "assistant", "content": r["chosen"]}],
                    "rejected": [{"role": "assistant", "content": r["rejected"]}]})
    return out


def _margin(trainer, dataset) -> dict:
    """TRL's own implicit-reward statistics on ``dataset`` (chosen vs rejected)."""
    m = trainer.evaluate(eval_dataset=dataset)
    return {k.removeprefix("eval_"): round(float(v), 6) for k, v in m.items()
            if k.startswith("eval_rewards/") or k == "eval_loss"}


def train_adapter(base_dir: Path, rows: list[dict], recipe: dict, out_dir: Path, *,
                  device: str = "cpu", chat_template_path: str | None = None,
                  init_dir: Path | None = None, resume_dir: Path | None = None,
                  resume_key: str = "") -> dict:
    """Train a PEFT adapter on a mixture's rows and save it to ``out_dir``.

    objective sft: TRL SFTTrainer on chat ``messages`` (assistant-only loss).
    objective dpo: TRL DPOTrainer on chosen/rejected pairs; the reference is the base model
    (adapters disabled, no second copy in memory) or, with ``reference: init``, the adapter
    the run starts from. ``init_dir``: continue training that adapter (a run's
    ``init_from``) instead of a fresh one.

    Returns the metrics dict (loss curve, tokens seen, tokens/s, peak memory, wall time, ...).
    """
    from datasets import Dataset
    from transformers import AutoTokenizer

    objective = recipe.get("objective", "sft")
    wall0 = time.time()
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = load_base_for_training(base_dir, recipe, device)
    peft_config = peft_config_for(recipe)
    if init_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_dir), is_trainable=True)
        peft_config = None  # the loaded adapter is trained further
    # TRL's checkpoints (adapter, optimizer, scheduler, RNG states, data position) go to a
    # folder beside the adapter, outside its atomic temporary folder: a killed job's next
    # attempt resumes from the last one (HF Trainer restores the RNG and skips the batches
    # already seen, so the data order is the same). The caller removes it once the adapter
    # is in place.
    scratch = resume_dir or out_dir / "_trainer"
    resume_step = prepare_resume_dir(scratch, resume_key) if resume_dir else None
    common = _training_args(recipe, device, scratch, resumable=resume_dir is not None)
    curve: list = []
    loss_cb = _loss_callback(curve)
    arms_dir = scratch / "arms"
    callbacks = [loss_cb, _checkpoint_callback(arms_dir, recipe.get("save_every"))]
    extra: dict = {}
    if objective == "sft":
        from trl import SFTConfig, SFTTrainer

        if recipe["assistant_only_loss"]:
            override = Path(chat_template_path).read_text() if chat_template_path else None
            tok.chat_template = training_template(tok, override)
        train_rows = [{"messages": r["messages"]} for r in rows if r.get("messages")]
        if not train_rows:
            raise DeltaflowError("the mixture has no chat rows to train on")
        args = SFTConfig(**common, assistant_only_loss=recipe["assistant_only_loss"],
                         packing=recipe.get("packing", False))
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                             processing_class=tok, peft_config=peft_config, callbacks=callbacks)
    else:
        from trl import DPOConfig, DPOTrainer

        train_rows = preference_rows(rows)
        if not train_rows:
            raise DeltaflowError("the mixture has no chosen/rejected pairs to train DPO on "
                                 "(use a `kind: preference` mixture)")
        # HF's group_by_length sampler reads `input_ids`, which DPO's pair rows do not have
        common["train_sampling_strategy"] = "random"
        args = DPOConfig(**common, beta=recipe.get("beta", 0.1))
        dataset = Dataset.from_list(train_rows)
        trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=dataset,
                             processing_class=tok, peft_config=peft_config, callbacks=callbacks)
        # Continuing an adapter, TRL keeps a frozen copy of it ("ref") as the reference. Seed
        # 001 anchors to the base instead: without the "ref" adapter TRL computes the
        # reference log-probs with adapters disabled, i.e. from the base model.
        if init_dir is not None and recipe.get("reference", "base") == "base":
            trainer.model.delete_adapter("ref")
        extra["reference"] = "init" if init_dir is not None and recipe.get("reference") == "init" else "base"
        extra["preference_before"] = _margin(trainer, trainer.train_dataset)
    # TRL drops examples with no trainable tokens after truncation; count them. (Packed, the
    # dataset holds packed sequences, not rows, so its length says nothing about drops.)
    packed = getattr(args, "packing", False)  # SFT only
    used = len(trainer.train_dataset) if not packed else len(train_rows)
    if packed:
        log.info("packed %d rows into %d sequences of up to %d tokens", len(train_rows),
                 len(trainer.train_dataset), recipe["max_length"])
    if used < len(train_rows):
        log.warning("TRL dropped %d of %d examples with no trainable tokens after truncation to "
                    "max_length=%d", len(train_rows) - used, len(train_rows), recipe["max_length"])
    train_start = time.time()
    if resume_step:
        log.info("resuming from step %d (%s)", resume_step, scratch)
    result = trainer.train(resume_from_checkpoint=bool(resume_step))
    train_s = time.time() - train_start
    if objective == "dpo":
        extra["preference_after"] = _margin(trainer, trainer.train_dataset)
        log.info("reward margin on the training pairs: %.4f -> %.4f",
                 extra["preference_before"].get("rewards/margins", float("nan")),
                 extra["preference_after"].get("rewards/margins", float("nan")))
    trainer.model.save_pretrained(out_dir, selected_adapters=["default"])
    saved = sorted(int(d.name.removeprefix("step")) for d in arms_dir.glob("step*"))
    for step in saved:
        shutil.copytree(arms_dir / f"step{step}", out_dir / "checkpoints" / f"step{step}")
    if resume_dir is None:
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
        "resumed_from_step": resume_step,
        "peft": {"method": recipe.get("method", "lora"), "use_rslora": recipe.get("use_rslora", False),
                 "load_in_4bit": recipe.get("load_in_4bit", False)},
        "checkpoints": [{"step": s, "path": f"checkpoints/step{s}",
                         "loss": next((c["loss"] for c in reversed(curve) if c["step"] <= s), None)}
                        for s in saved],
        "train_rows": len(train_rows),
        "train_examples_used": used,
        "train_examples_dropped_no_target_tokens": len(train_rows) - used,
        **extra,
    }

"""SFT adapters with TRL's SFTTrainer and PEFT LoRA.

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


def _loss_callback(curve: list, t0: list):
    from transformers import TrainerCallback

    class LossCurve(TrainerCallback):
        """Collect logged losses; stop with a clear error on a non-finite loss."""

        def on_train_begin(self, args, state, control, **kw):
            t0[0] = time.time()

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs:
                return
            loss = float(logs["loss"])
            curve.append({"step": state.global_step, "loss": loss,
                          "learning_rate": logs.get("learning_rate"),
                          "tokens_seen": state.num_input_tokens_seen,
                          "elapsed_s": round(time.time() - t0[0], 3)})
            log.info("step %d/%d loss %.4f", state.global_step, state.max_steps, loss)
            if not math.isfinite(loss):
                raise DeltaflowError(f"non-finite training loss {loss} at step {state.global_step}; "
                                     "lower the learning rate")

    return LossCurve()


def train_sft_adapter(base_dir: Path, rows: list[dict], recipe: dict, out_dir: Path, *,
                      device: str = "cpu", chat_template_path: str | None = None) -> dict:
    """Train a LoRA adapter on ``rows`` (chat ``messages``); save it to ``out_dir``.

    Returns the metrics dict (loss curve, tokens seen, tokens/s, peak memory, wall time).
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    wall0 = time.time()
    tok = AutoTokenizer.from_pretrained(base_dir)
    if recipe["assistant_only_loss"]:
        override = Path(chat_template_path).read_text() if chat_template_path else None
        tok.chat_template = training_template(tok, override)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    chat_rows = [{"messages": r["messages"]} for r in rows if r.get("messages")]
    if not chat_rows:
        raise DeltaflowError("the mixture has no chat rows to train on")
    train_ds = Dataset.from_list(chat_rows)
    peft_config = LoraConfig(r=recipe["r"], lora_alpha=recipe["alpha"],
                             lora_dropout=recipe["dropout"],
                             target_modules=recipe["target_modules"], task_type="CAUSAL_LM")
    # TRL's output_dir lives inside the (atomic, temporary) adapter folder and is removed
    # before that folder is renamed into place; a killed job leaves it in the stale
    # temporary folder, which the next attempt deletes.
    scratch = out_dir / "_trainer"
    args = SFTConfig(
        output_dir=str(scratch),
        max_steps=recipe["max_steps"],
        per_device_train_batch_size=recipe["batch_size"],
        gradient_accumulation_steps=recipe["grad_accum"],
        learning_rate=recipe["learning_rate"],
        lr_scheduler_type=recipe["lr_scheduler"],
        warmup_steps=int(recipe["warmup_ratio"] * recipe["max_steps"]),
        logging_steps=recipe["logging_steps"],
        max_length=recipe["max_length"],
        assistant_only_loss=recipe["assistant_only_loss"],
        seed=recipe["seed"],
        data_seed=recipe["seed"],
        # TRL's bf16 + gradient checkpointing defaults are 2x slower on CPU (FACTS.md).
        bf16=device == "cuda",
        gradient_checkpointing=False,
        use_cpu=device == "cpu",
        save_strategy="no",
        report_to=[],
        include_num_input_tokens_seen=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        # Batches of similar length: on CPU the cost is padded tokens, and a mix of short
        # task rows with long replay rows otherwise pads most batches to the longest row.
        train_sampling_strategy=recipe["sampling"],
    )
    curve: list = []
    t0 = [time.time()]
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tok,
                         peft_config=peft_config, callbacks=[_loss_callback(curve, t0)])
    # TRL drops examples whose assistant tokens were all truncated away; count them.
    used = len(trainer.train_dataset)
    if used < len(chat_rows):
        log.warning("TRL dropped %d of %d examples with no trainable tokens after truncation to "
                    "max_length=%d", len(chat_rows) - used, len(chat_rows), recipe["max_length"])
    train_start = time.time()
    result = trainer.train()
    train_s = time.time() - train_start
    trainer.model.save_pretrained(out_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    tokens = int(trainer.state.num_input_tokens_seen)
    return {
        "steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "final_loss": curve[-1]["loss"] if curve else None,
        "loss_curve": curve,
        "tokens_seen": tokens,
        "tokens_per_s": round(tokens / train_s, 2) if train_s > 0 else None,
        "train_s": round(train_s, 2),
        "wall_s": round(time.time() - wall0, 2),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "device": device,
        "train_rows": len(chat_rows),
        "train_examples_used": used,
        "train_examples_dropped_no_target_tokens": len(chat_rows) - used,
    }

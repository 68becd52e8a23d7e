"""PEFT adapters (LoRA, DoRA, rsLoRA, QLoRA) trained with TRL, one objective per module.

We call TRL directly and only add what it does not record for us: the resolved recipe, a loss
curve, tokens/s and peak memory in ``metrics.json``.

- ``runner``: ``train_adapter``, what the adapter rule runs: the model, the trainer of the
  recipe's objective (``OBJECTIVES``), the training, the adapter with its arms, the metrics.
- ``objective``: ``Objective``, what the runner needs from an objective: its trainer builder
  and hooks. Adding an objective is a module holding ``OBJECTIVE`` and an entry in
  ``runner.OBJECTIVES``.
- ``sft``, ``dpo``, ``cpt``, ``grpo``: the objectives (SFTTrainer on chat messages,
  DPOTrainer on preference pairs, SFTTrainer on raw text, GRPOTrainer on prompts);
  ``rewards``: GRPO's reward functions and group statistics; ``judge_reward``: a judge model's
  rubric or pairwise score as a reward, in-process, judgments cached by content.
- ``args``: the TrainingArguments every objective shares (precision, steps, per-process batch,
  DDP / FSDP).
- ``model``: the base in the training precision, new tokens, the PEFT config, the adapter saver.
- ``data``: the validation split, the epoch-seeded length-grouped sampler, the examples TRL kept.
- ``callbacks``: the loss curve (RL log keys, group statistics), the checkpoint arms, the RL
  block of metrics.json, peak memory.
- ``resume``: the resume folder and its key, checkpoint spacing, and the checkpoints removed
  after a non-finite loss.
- ``world``: the processes a job runs on (imports nothing from the package).
- ``launch``: one adapter trained on several processes through torchrun
  (``python -m deltaflow.training.launch <job.json>`` per process).

Nothing is imported here: ``deltaflow.config`` imports ``world`` and ``rewards`` at every
Snakefile parse, and the heavy modules (torch, TRL) must not load then. Every module logs as
``deltaflow.training``.
"""

"""The processes a training job runs on: torchrun's ``WORLD_SIZE`` and ``RANK``, and the count a
job's ``train`` settings ask for. The config reads it at every Snakefile parse, so it imports
nothing but ``os``."""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def processes_for(train: dict) -> int:
    """Processes a training job runs: train.processes, else one per requested GPU on cuda."""
    if train.get("processes"):
        return int(train["processes"])
    return max(1, int(train.get("gpus") or 0)) if train.get("device") == "cuda" else 1

"""Resuming a killed training: the key a resume folder is written under, the folder's newest
complete checkpoint, how often checkpoints are saved, and the removal of checkpoints saved after
the last finite loss."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..io import sha256_text
from ..provenance import device_class, output_versions

log = logging.getLogger(__package__)  # one logger for the package: "deltaflow.training"


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

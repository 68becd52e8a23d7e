"""The rows a run trains on: the held-out validation rows, the epoch-seeded length-grouped
sampler, and how many examples TRL kept after truncation."""

from __future__ import annotations

import logging

from ..errors import DeltaflowError

log = logging.getLogger(__package__)  # one logger for the package: "deltaflow.training"


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


def _epoch_seeded(trainer_cls):
    """``trainer_cls`` whose length-grouped sampler draws each epoch's order from
    (data_seed, epoch) instead of torch's global RNG.

    HF's LengthGroupedSampler shuffles with the global generator when the epoch's iterator is
    made; a run resumed inside a later epoch restores the RNG of the checkpoint's step, not of
    that epoch's start, so the resumed epoch saw another order than the uninterrupted run
    (losses differed from the first resumed step). Seeding from (seed, epoch) through the
    ``set_epoch`` hook the Trainer calls every epoch (as accelerate's seedable random sampler
    does for ``sampling: random``) makes the order a function of the epoch alone. TRL's
    RepeatSampler (grpo, rloo) gets the same hook (``_epoch_seeded_repeat``)."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
    from trl.trainer.utils import RepeatSampler

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
        _seeded_sampler = None

        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is RepeatSampler:  # grpo and rloo
                sampler = _epoch_seeded_repeat(RepeatSampler)(
                    sampler.data_source,
                    sampler.mini_repeat_count,
                    batch_size=sampler.batch_size,
                    repeat_count=sampler.repeat_count,
                    shuffle=sampler.shuffle,
                    seed=sampler.seed,
                )
            elif type(sampler) is LengthGroupedSampler:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                # grouped by the global batch, so N processes' shares of each step are the
                # rows one process would take (accelerate deals batch i to process i mod N)
                sampler = EpochSeededLengthGroupedSampler(
                    sampler.batch_size * self.args.world_size, list(sampler.lengths), seed
                )
            else:
                return sampler
            self._seeded_sampler = sampler
            return sampler

        def _run_epoch(self, *args, **kwargs):
            # the Trainer's own set_epoch reaches a sampler under one or two wrappers; on several
            # processes a run resumed inside an epoch has three (accelerate's BatchSamplerShard
            # and SkipBatchSampler over the BatchSampler), so the epoch is set here, directly
            if self._seeded_sampler is not None:
                self._seeded_sampler.set_epoch(kwargs["epoch"])
            return super()._run_epoch(*args, **kwargs)

    Seeded.__name__ = Seeded.__qualname__ = trainer_cls.__name__
    return Seeded


def _epoch_seeded_repeat(repeat_sampler_cls):
    """TRL's RepeatSampler (GRPO, RLOO) whose order in epoch ``e`` is the ``e``-th permutation of
    its seeded generator, as an uninterrupted run draws it.

    The sampler draws one permutation from its own generator each time an epoch starts, and a
    resumed run builds a new sampler: a run resumed in epoch ``e`` took epoch 0's order there
    and saw other prompts than the run never stopped. The epoch set before each epoch starts
    (``Seeded._run_epoch``) reseeds the generator and skips the epochs before."""
    import torch

    class EpochSeededRepeatSampler(repeat_sampler_cls):
        epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def __iter__(self):
            if self.shuffle and self.seed is not None:
                self.generator = torch.Generator().manual_seed(self.seed)
                for _ in range(self.epoch):
                    torch.randperm(self.num_samples, generator=self.generator)
            return super().__iter__()

    return EpochSeededRepeatSampler


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

"""Accumulate every term's mean JᵀJ over the training samples, in one process or split across DDP processes.

Lightning is used for devices, DDP and the progress bar only: its validation loop visits every sample once,
does not wrap the module, and with ``inference_mode=False`` the steps may differentiate. Each validation step
updates one :class:`GramMean` per term, and one per solver *view* (a [D, D] matrix a solver reads of
each sample's Grams, e.g. the consensus solver's projector onto that sample's own solution);
:func:`accumulate` returns their sums over all processes to rank 0 and nothing else. Everything after
accumulation runs outside Lightning, on rank 0 alone.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ice_exp.common import stop
from ice_exp.engine.gram_mean import GramMean
from ice_exp.engine.grams import SampleGrams

View = Callable[[dict[str, Tensor]], Tensor]  # one sample's {term name: JᵀJ} -> a [D, D] matrix to average


class _Samples(Dataset):
    def __init__(self, z: Tensor) -> None:
        self.z = z

    def __len__(self) -> int:
        return len(self.z)

    def __getitem__(self, i: int) -> Tensor:
        return self.z[i]


class LatentSamples(pl.LightningDataModule):
    """The training samples z [N, z_dim]. Under DDP each process takes every world_size-th sample (no padding,
    no duplicates), so the summed accumulators equal a single process's."""

    def __init__(self, z: Tensor) -> None:
        super().__init__()
        self.z = z

    def val_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return DataLoader(_Samples(self.z[rank::world]), batch_size=1, shuffle=False)


class GramAccumulation(pl.LightningModule):
    """One validation step = one sample's JᵀJ per term, added to that term's accumulator. Checks for a stop
    signal (SIGTERM) before each sample (Lightning's loop checks too, between batches)."""

    def __init__(self, grams: SampleGrams, views: dict[str, View] | None = None) -> None:
        super().__init__()
        self.generator, self.space, self.grams = grams.generator, grams.space, grams
        self.criteria = nn.ModuleList(grams.terms.criteria.values())  # registered so that .to(device) moves them
        dim = grams.generator.space_dim(grams.space)
        self.accumulators = nn.ModuleDict({t.name: GramMean(dim) for t in grams.terms.terms})
        self.views = list((views or {}).items())  # names may hold dots, which a ModuleDict refuses
        self.view_accumulators = nn.ModuleList(GramMean(dim) for _ in self.views)

    def validation_step(self, z: Tensor, batch_idx: int) -> None:
        stop.check()
        u = self.generator.encode(z, self.space)[0].detach()
        grams = self.grams(z[0], u)
        for name, g in grams.items():
            self.accumulators[name].update(g)
        for (_, view), accumulator in zip(self.views, self.view_accumulators):
            accumulator.update(view(grams))


ONE_CPU = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}


def accumulate(grams: SampleGrams, z: Tensor, trainer: dict[str, Any] = ONE_CPU,
               views: dict[str, View] | None = None) -> dict[str, Tensor] | None:
    """{term name: (1/N) Σ_n J_nᵀJ_n [D, D] float64} over the samples z [N, z_dim], each sample's JᵀJ from
    ``grams``, and {view name: (1/N) Σ_n view(that sample's Grams)} for ``views`` (solvers.base.views_of);
    ``trainer`` is conf/config.yaml's ``trainer:``. Returns None on every DDP rank but 0."""
    module = GramAccumulation(grams, views)
    runner = pl.Trainer(**trainer, logger=False, inference_mode=False, enable_checkpointing=False,
                        enable_model_summary=False, use_distributed_sampler=False)  # LatentSamples shards itself
    try:
        with stop.between_samples():
            runner.validate(module, datamodule=LatentSamples(z), verbose=False)
    except SIGTERMException as error:  # Lightning's own SIGTERM stop is a SystemExit with exit code 0
        raise stop.Stopped("SIGTERM") from error
    module.to(runner.strategy.root_device)  # Lightning's teardown moved the models to the CPU: back for the next stages
    sums = {name: acc.compute() for name, acc in module.accumulators.items()}  # every rank: the sum over processes
    sums |= {name: acc.compute() for (name, _), acc in zip(module.views, module.view_accumulators)}
    return sums if runner.is_global_zero else None

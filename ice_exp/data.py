"""Latent samples as a LightningDataModule: the training points whose Jacobians are accumulated."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


def latent_pool(seed: int, pool: int, z_dim: int) -> Tensor:
    """z = torch.manual_seed(seed); randn(pool, z_dim), as the seed notebook draws its samples."""
    return torch.randn(pool, z_dim, generator=torch.Generator().manual_seed(seed))


class _Indexed(Dataset):
    def __init__(self, z: Tensor, indices: list[int]) -> None:
        self.z, self.indices = z, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, Tensor]:
        return self.indices[i], self.z[self.indices[i]]


class LatentSamples(pl.LightningDataModule):
    """Pool entries ``indices`` of the seeded pool. Under DDP each process takes every world_size-th
    sample (no padding, no duplicates), so the summed accumulators equal a single process's."""

    def __init__(self, z_dim: int, seed: int = 8, pool: int = 32, indices: list[int] | None = None) -> None:
        super().__init__()
        indices = list(range(2)) if indices is None else list(indices)
        bad = [i for i in indices if not 0 <= i < pool]
        if not indices or bad:
            raise ValueError(f"samples.indices: need indices within [0, {pool}) of the pool, got {indices}")
        self.z, self.indices = latent_pool(seed, pool, z_dim), indices

    def val_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return DataLoader(_Indexed(self.z, self.indices[rank::world]), batch_size=1, shuffle=False)

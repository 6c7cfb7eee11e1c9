"""The seeded latent pool every run draws its samples from."""
from __future__ import annotations

import torch
from torch import Tensor


def latent_pool(seed: int, pool: int, z_dim: int) -> Tensor:
    """z = torch.manual_seed(seed); randn(pool, z_dim), as the seed notebook draws its samples: on the CPU, so
    that every device draws the same faces (Generator.encode moves z to the generator)."""
    return torch.randn(pool, z_dim, generator=torch.Generator().manual_seed(seed), device="cpu")

"""StyleGAN2 for ice-exp: our own network (``networks``), plain-PyTorch resampling (``upfirdn``) and loaders
for the three checkpoint formats (``loaders``, reading pickles with ``ice_exp.checkpoints.safe_pickle``, which
never runs checkpoint code). ``build_stylegan2`` is the Hydra entry point of ``conf/generator/stylegan2*.yaml``."""
from __future__ import annotations

from pathlib import Path

import torch

from ice_exp.checkpoints import CheckpointError
from ice_exp.generators.stylegan2.loaders import MODEL, PUBLISHED, load_generator
from ice_exp.generators.stylegan2.networks import StyleGAN2Generator, style_layout

__all__ = ["CheckpointError", "PUBLISHED", "StyleGAN2Generator", "build_stylegan2", "load_generator", "style_layout"]


def build_stylegan2(path: str | Path | None = None, resolution: int | None = None, noise_mode: str = "const",
                    truncation_psi: float = 1.0, z_dim: int = 512, w_dim: int = 512, channel_base: int = 32768,
                    channel_max: int = 512, mapping_layers: int = 8, conv_clamp: float | None = None,
                    seed: int = 0) -> StyleGAN2Generator:
    """With ``path``: load that checkpoint (the file decides the architecture; ``resolution``, when given,
    must match it). Without: random weights from ``seed`` for the architecture given by the other keys
    (for tests and smoke runs; NVlabs' initialisation, so noise strengths start at zero)."""
    if path is not None:
        G = load_generator(path, noise_mode=noise_mode, truncation_psi=truncation_psi)
        if resolution is not None and G.resolution != resolution:
            raise CheckpointError(f"{MODEL}: {path} renders {G.resolution} px, the config expects {resolution} px")
        return G
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN2Generator(
            z_dim=z_dim, w_dim=w_dim, img_resolution=1024 if resolution is None else resolution,
            mapping_kwargs=dict(num_layers=mapping_layers),
            synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, conv_clamp=conv_clamp),
            noise_mode=noise_mode, truncation_psi=truncation_psi)
    return G.eval().requires_grad_(False)

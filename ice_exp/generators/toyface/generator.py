"""toyface: a seeded, differentiable StyleGAN-shaped face generator with known ground-truth factors.

z -> mapping MLP -> w -> w+ (num_ws copies) -> per-layer affine styles -> packed s -> factors -> render.
Nothing is trained: every weight comes from ``seed``. The factor map is in ``factors.py``, the renderer in
``render.py``; ``factor_jacobian`` and ``true_subspace`` give the ground truth that no real generator has.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ice_exp.generators.base import Frame, Generator
from ice_exp.generators.toyface.factors import FACTORS, factor_index, readout_matrix, true_subspace
from ice_exp.generators.toyface.render import render

NORMALISING_SAMPLES = 4096  # z samples used once to centre and scale the factor read-out
TEXTURE_WAVES = 12  # sinusoids summed into the fixed skin / hair texture


class ToyFaceGenerator(Generator):
    def __init__(self, resolution: int = 128, seed: int = 0, z_dim: int = 32, w_dim: int = 32,
                 style_dims: tuple[int, ...] = (32, 32, 32, 32, 16, 16, 16, 16), mapping_layers: int = 4,
                 factor_gain: float = 0.9, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not 16 <= resolution <= 512:
            raise ValueError(f"resolution: must be within 16..512 (64..512 to look at; tests use 32..64), got {resolution}")
        self.resolution, self.z_dim, self.w_dim = resolution, z_dim, w_dim
        self.style_dims, self.num_ws = tuple(style_dims), len(style_dims)
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("map_weights", torch.randn(mapping_layers, w_dim, z_dim, generator=gen) / math.sqrt(z_dim))
        self.register_buffer("map_biases", 0.1 * torch.randn(mapping_layers, w_dim, generator=gen))
        self.register_buffer("affine_weight", torch.randn(self.s_dim, w_dim, generator=gen) / math.sqrt(w_dim))
        self.register_buffer("affine_bias", 0.2 * torch.randn(self.s_dim, generator=gen))
        self.register_buffer("readout", readout_matrix(self.style_dims, gen))
        waves = torch.cat([torch.randn(TEXTURE_WAVES, 2, generator=gen) * 9, torch.rand(TEXTURE_WAVES, 1, generator=gen) * 6.3], 1)
        self.register_buffer("noise", waves)  # fixed texture: frequencies and phases of sinusoids
        # centre and scale the read-out so that factors spread over (-1, 1) on sampled faces
        with torch.no_grad():
            z = torch.randn(NORMALISING_SAMPLES, z_dim, generator=gen)
            styles = self.encode(z, "s")
            self.register_buffer("s_mean", styles.mean(0))  # the average face's styles
            pre = styles @ self.readout.T
            self.register_buffer("readout_centre", pre.mean(0))
            self.register_buffer("readout_scale", pre.std(0) / factor_gain)
        self.to(dtype)

    # --- the Generator interface -------------------------------------------------------------------
    def mapping(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        x = z * torch.rsqrt(z.square().mean(-1, keepdim=True) + 1e-8)  # as StyleGAN's normalize_2nd_moment
        for weight, bias in zip(self.map_weights, self.map_biases):
            x = F.leaky_relu(x @ weight.T + bias, 0.2) * math.sqrt(2)
        return x

    def styles(self, ws: Tensor) -> Tensor:
        per_layer = torch.split(self.affine_weight, list(self.style_dims), 0)
        biases = torch.split(self.affine_bias, list(self.style_dims), 0)
        return self.pack([ws[:, i] @ a.T + b for i, (a, b) in enumerate(zip(per_layer, biases))])

    def synthesis(self, s: Tensor) -> Frame:
        return self.render_code(self.factors(s))

    def code(self, u: Tensor, space: str) -> Tensor:
        """The factors [B, 20]: the renderer reads nothing else."""
        return self.factors(self.to_styles(u, space))

    def render_code(self, code: Tensor) -> Frame:
        image, scene = render(code, self.resolution, self.noise)
        return Frame(image=image * 0.5 + 0.5, scene=scene)

    # --- ground truth ----------------------------------------------------------------------------------
    def factors(self, s: Tensor) -> Tensor:
        """The named factors [B, 20] in (-1, 1) of packed styles s."""
        return torch.tanh((s @ self.readout.T - self.readout_centre) / self.readout_scale)

    def factor_jacobian(self, u: Tensor, space: str) -> Tensor:
        """d factors / d u [B, 20, D], exactly, from the factor map alone (no rendering, no analyzer)."""
        jac = torch.func.vmap(torch.func.jacrev(lambda v: self.factors(self.to_styles(v[None], space))[0]))
        return jac(u)

    def true_subspace(self, factor_names: list[str] | tuple[str, ...], space: str, z: Tensor | None = None) -> Tensor:
        """Orthonormal [D, k]: directions that change exactly these factors. In S, W and W+ the truth is the
        same at every sample; in z it depends on the point, given by ``z`` (default: the mean, zero)."""
        point = torch.zeros(1, self.z_dim, dtype=self.readout.dtype, device=self.readout.device) if z is None else z[:1]
        u = self.encode(point, space)
        return true_subspace(self.factor_jacobian(u, space)[0], factor_index(factor_names))

    @staticmethod
    def factor_names() -> tuple[str, ...]:
        return FACTORS

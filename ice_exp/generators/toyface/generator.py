"""toyface: a seeded, differentiable StyleGAN-shaped face generator with known ground-truth factors.

z -> mapping MLP -> w -> w+ (num_ws copies) -> per-layer affine styles -> packed s -> factors -> render.
Nothing is trained: every weight comes from ``seed``. The factor map is in ``factors.py`` (linear in S, or
curved with ``curvature`` > 0), the renderer in ``render.py``; ``factor_jacobian`` and ``true_subspace``
give the ground truth that no real generator has.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ice_exp.config.rules import CURVATURE, enforce
from ice_exp.generators.base import Frame, Generator
from ice_exp.generators.toyface.factors import FACTORS, curve_weights, factor_index, readout_matrix, true_subspace
from ice_exp.generators.toyface.render import render

NORMALISING_SAMPLES = 4096  # z samples used once to centre and scale the factor read-out
TEXTURE_WAVES = 12  # sinusoids summed into the fixed skin / hair texture


class ToyFaceGenerator(Generator):
    def __init__(self, resolution: int = 128, seed: int = 0, z_dim: int = 32, w_dim: int = 32,
                 style_dims: tuple[int, ...] = (32, 32, 32, 32, 16, 16, 16, 16), mapping_layers: int = 4,
                 factor_gain: float = 0.9, curvature: float = 0.0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not 16 <= resolution <= 512:
            raise ValueError(f"resolution: must be within 16..512 (64..512 to look at; tests use 32..64), got {resolution}")
        enforce({"curvature": CURVATURE}, {"curvature": curvature}, "generator.")
        self.curvature = float(curvature)
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
            # the curved part, drawn after everything above (a linear world's weights do not depend on it)
            curve_in, curve_bias, curve_out = curve_weights(self.style_dims, gen)
            self.register_buffer("s_std", styles.std(0))
            self.register_buffer("curve_in", curve_in)
            self.register_buffer("curve_bias", curve_bias)
            self.register_buffer("curve_out", curve_out)
            raw = self._curve_raw(styles)
            self.register_buffer("curve_centre", raw.mean(0))
            self.register_buffer("curve_scale", raw.std(0) / factor_gain)  # the same spread as the linear part
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
        pre = (s @ self.readout.T - self.readout_centre) / self.readout_scale
        if self.curvature:  # skipped at 0, so a linear world is bit-identical to one built before curvature existed
            pre = pre + self.curvature * (self._curve_raw(s) - self.curve_centre) / self.curve_scale
        return torch.tanh(pre)

    def _curve_raw(self, s: Tensor) -> Tensor:
        """The nonlinear part before centring and scaling: G tanh(A (s - s̄)/σ_s + b) [B, 20]."""
        return torch.tanh(((s - self.s_mean) / self.s_std) @ self.curve_in.T + self.curve_bias) @ self.curve_out.T

    def factor_jacobian(self, u: Tensor, space: str) -> Tensor:
        """d factors / d u [B, 20, D], exactly, from the factor map alone (no rendering, no analyzer)."""
        jac = torch.func.vmap(torch.func.jacrev(lambda v: self.factors(self.to_styles(v[None], space))[0]))
        return jac(u)

    def true_subspace(self, factor_names: list[str] | tuple[str, ...], space: str, z: Tensor | None = None) -> Tensor:
        """Orthonormal [D, k]: directions that change exactly these factors at the face ``z[:1]`` (default: the
        mean, zero). In a linear world (curvature 0) it is the same at every face in S, W and W+; in z, or in
        a curved world, it depends on the face."""
        point = torch.zeros(1, self.z_dim, dtype=self.readout.dtype, device=self.readout.device) if z is None else z[:1]
        u = self.encode(point, space)
        return true_subspace(self.factor_jacobian(u, space)[0], factor_index(factor_names))

    @staticmethod
    def factor_names() -> tuple[str, ...]:
        return FACTORS

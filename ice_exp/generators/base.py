"""The generator interface every criterion, solver and experiment works with.

A generator maps z -> w (mapping) -> w+ (num_ws copies) -> packed styles s (space S) -> image.
Every space is an entry point: ``encode(z, space)`` gives a latent point ``u`` in that space and
``decode(u, space)`` renders it. Latent points are always flat ``[B, D]`` tensors so that solvers never
need to know the space's shape. Images are in [-1, 1]; criteria see ``Frame.image = G * 0.5 + 0.5``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ice_exp.config.schema import Space

SPACES = tuple(s.value for s in Space)  # the schema's choices (ice_exp/config/schema.py)


@dataclass
class Frame:
    """What analyzers and criteria see: the image in ~[0, 1] and, for toyface, the rendered scene."""

    image: Tensor  # [B, 3, R, R], x = G(u) * 0.5 + 0.5, not clamped (as the seed)
    scene: Any = None  # toyface's geometry and layers (oracle analyzers read it); None for StyleGAN2


def check_space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"space: unknown space {space!r}; allowed values: {', '.join(SPACES)}")
    return space


class Generator(nn.Module):
    """Base class: subclasses set the sizes and implement mapping, styles and synthesis."""

    z_dim: int
    w_dim: int
    num_ws: int
    style_dims: tuple[int, ...]  # per style layer, in block order (S packs them in this order)
    resolution: int
    # Style layers (indices into style_dims, ascending) whose affine feeds a toRGB layer rather than a conv:
    # SeFa's reference keeps only the last of them. None by default (toyface has no toRGB).
    torgb_layers: tuple[int, ...] = ()

    # --- implemented by subclasses -------------------------------------------------------------
    def mapping(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        """z [B, z_dim] -> w [B, w_dim]."""
        raise NotImplementedError

    def styles(self, ws: Tensor) -> Tensor:
        """w+ [B, num_ws, w_dim] -> packed styles s [B, s_dim]."""
        raise NotImplementedError

    def synthesis(self, s: Tensor) -> Frame:
        """Packed styles s [B, s_dim] -> Frame with image in [-1, 1] mapped to ~[0, 1]."""
        raise NotImplementedError

    # --- shared machinery ---------------------------------------------------------------------
    @property
    def s_dim(self) -> int:
        return int(sum(self.style_dims))

    def space_dim(self, space: str) -> int:
        return {"z": self.z_dim, "w": self.w_dim, "wp": self.num_ws * self.w_dim, "s": self.s_dim}[
            check_space(space)
        ]

    def pack(self, styles: list[Tensor]) -> Tensor:
        """Per-layer styles [B, d_l] -> packed [B, s_dim]."""
        if [t.shape[-1] for t in styles] != list(self.style_dims):
            raise ValueError(f"pack: got layer widths {[t.shape[-1] for t in styles]}, expected {list(self.style_dims)}")
        return torch.cat(styles, dim=-1)

    def unpack(self, s: Tensor) -> list[Tensor]:
        """Packed [B, s_dim] -> per-layer styles [B, d_l]."""
        if s.shape[-1] != self.s_dim:
            raise ValueError(f"unpack: packed styles have width {s.shape[-1]}, expected {self.s_dim}")
        return list(torch.split(s, list(self.style_dims), dim=-1))

    def encode(self, z: Tensor, space: str) -> Tensor:
        """Latent point of z in ``space``, flattened to [B, D] (z moves to the generator's dtype and device)."""
        check_space(space)
        z = z.to(next(itertools.chain(self.parameters(), self.buffers())))
        if space == "z":
            return z
        w = self.mapping(z)
        if space == "w":
            return w
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if space == "wp":
            return ws.flatten(1)
        return self.styles(ws)

    def to_styles(self, u: Tensor, space: str) -> Tensor:
        """Any space -> packed styles, differentiably."""
        check_space(space)
        if u.shape[-1] != self.space_dim(space):
            raise ValueError(f"latent has width {u.shape[-1]}, space {space!r} needs {self.space_dim(space)}")
        if space == "s":
            return u
        if space == "wp":
            return self.styles(u.reshape(-1, self.num_ws, self.w_dim))
        w = self.mapping(u) if space == "z" else u
        return self.styles(w.unsqueeze(1).expand(-1, self.num_ws, -1))

    def code(self, u: Tensor, space: str) -> Tensor:
        """The narrowest point of ``decode`` [B, H]: the frame depends on u only through it (the packed
        styles unless a subclass knows better; toyface: its 20 factors). Where H < D, engine.frame takes a
        frame's Jacobian at the code and chains it with d code / d u: H rendering passes instead of D."""
        return self.to_styles(u, space)

    def render_code(self, code: Tensor) -> Frame:
        """The frame of a code [B, H]."""
        return self.synthesis(code)

    def decode(self, u: Tensor, space: str) -> Frame:
        """Render latent points of ``space``: the function every Jacobian differentiates."""
        return self.render_code(self.code(u, space))

    def weight_checksums(self) -> dict[str, str]:
        """sha256 of each weight file this generator was loaded from (empty for seeded generators)."""
        return {}

"""Generator-based peers (docs/peers.md): directions in w from the generator alone, no criteria, no Grams.

Both need ``Problem.generator`` and ``Problem.space``. Their native directions v live in w and are applied,
as in the papers, at the w+ entries ``layers`` (None = all); ``w_to_space`` maps them to the run's space:
- w: v itself (only with all layers: an edit of some w+ entries has no w counterpart);
- wp: v at the chosen w+ entries, zero elsewhere, normalised;
- s: the style change this w+ edit causes, J_{w+→s}·(that w+ direction), normalised. Styles are affine in
  w+ in every StyleGAN-shaped generator, so this is exact at every sample;
- z is not supported (the mapping is non-linear, a w direction has no fixed z counterpart).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ice_exp.config import schema
from ice_exp.config.rules import SOLVER, enforce
from ice_exp.config.schema import Basis, ToRGB
from ice_exp.engine.jacobian import basis_rows, directional
from ice_exp.generators.base import Generator
from ice_exp.solvers.base import Problem, Solution, Solver, ranked


def _entries(generator: Generator, layers: list[int] | None) -> list[int]:
    chosen = list(range(generator.num_ws)) if layers is None else sorted(set(layers))
    if not chosen or not all(0 <= k < generator.num_ws for k in chosen):
        raise ValueError(f"layers: need w+ indices within [0, {generator.num_ws}), got {layers}")
    return chosen


def _style_map(generator: Generator) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """(w+ point [num_ws·w_dim] -> styles [s_dim], a w+ point): styles are affine in w+, so the map's
    Jacobian is the same at every point and the point is any sample's."""
    point = generator.encode(torch.zeros(1, generator.z_dim), "wp")[0].detach()
    return (lambda v: generator.to_styles(v[None], "wp")[0]), point


def w_to_space(generator: Generator, space: str, directions: Tensor, layers: list[int] | None = None) -> Tensor:
    """w directions [w_dim, K] applied at the w+ entries ``layers`` -> unit directions [D, K] in ``space``."""
    chosen = _entries(generator, layers)
    if space == "w":
        if len(chosen) != generator.num_ws:
            raise ValueError("space w: directions applied to some w+ entries only need space wp or s")
        return directions / directions.norm(dim=0)
    if space not in ("wp", "s"):
        raise ValueError(f"space {space!r}: w directions map to w, wp or s only (the mapping z -> w is non-linear)")
    wp = torch.zeros(generator.num_ws, generator.w_dim, directions.shape[1], dtype=directions.dtype, device=directions.device)
    wp[chosen] = directions
    wp = wp.flatten(0, 1)
    if space == "s":
        styles, point = _style_map(generator)
        wp = directional(styles, point, wp.T).T.to(directions)
    return wp / wp.norm(dim=0)


TORGB = tuple(t.value for t in ToRGB)  # the schema's choices
BASES = tuple(b.value for b in Basis)


def affine_matrix(generator: Generator, layers: list[int] | None = None, torgb: str = "all") -> Tensor:
    """The style-affine weights read from w+ entries ``layers``, stacked: [Σ d_l, w_dim] float64, one row per
    style channel, found as the non-zero rows of ∂s/∂w+_k (so any generator with affine styles works).
    toRGB style layers (``Generator.torgb_layers``) are kept per ``torgb``: all, only the last one, or none."""
    if torgb not in TORGB:
        raise ValueError(f"torgb: unknown {torgb!r}; allowed values: {', '.join(TORGB)}")
    dropped = {"all": (), "last": generator.torgb_layers[:-1], "none": generator.torgb_layers}[torgb]
    kept = torch.cat([torch.full((d,), layer not in dropped) for layer, d in enumerate(generator.style_dims)])
    styles, point = _style_map(generator)
    w_dim, rows = generator.w_dim, []
    for k in _entries(generator, layers):
        jac = directional(styles, point, basis_rows(k * w_dim, (k + 1) * w_dim, point.numel(), point)).T.double()
        rows.append(jac[(jac.abs().amax(1) > 0) & kept.to(jac.device)])  # kept style layers reading entry k
    if not sum(len(r) for r in rows):  # AᵀA = 0: every direction would be an arbitrary one with σ = 0
        raise ValueError(f"layers {layers} with torgb {torgb!r} read no style-affine weights (on StyleGAN2, w+ entry "
                         f"num_ws - 1 = {generator.num_ws - 1} feeds only the last toRGB); use torgb: last or all, "
                         f"or other layers")
    return torch.cat(rows)


class SeFa(Solver):
    """SeFa (Shen & Zhou, CVPR 2021), closed form: A = the style-affine weights of the w+ entries ``layers``
    (None = all) stacked [Σ d_l, w_dim], each row (one style channel) L2-normalised; directions = the top
    ``max_directions`` eigenvectors of AᵀA in w, mapped to the run's space (module docstring); σ = their
    eigenvalues. ``torgb: last`` reads, as genforce/sefa does on StyleGAN2, the conv affines plus only the
    final toRGB affine (its layer index num_layers − 1 names that toRGB); ``all`` is the project's variant
    (every toRGB affine, i.e. every style of S). ``max_directions`` 10 is the project's (genforce/sefa's
    ``--num_semantics`` is 5; its 5 are the first 5 here). Layers and ``torgb`` that read no affine raise.
    Needs ``Problem.generator`` and ``space``; ignores the Grams."""

    needs_grams = False

    def __init__(self, layers: list[int] | None = schema.SeFa.layers, torgb: str = schema.SeFa.torgb.value,
                 max_directions: int | None = schema.SeFa.max_directions) -> None:
        self.layers, self.torgb, self.max_directions = layers, torgb, max_directions

    def __call__(self, problem: Problem) -> Solution:
        generator, space = _needs(problem, "SeFa")
        a = affine_matrix(generator, self.layers, self.torgb)
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)
        sigma, v = torch.linalg.eigh(a.T @ a)
        top = ranked(sigma, v, self.max_directions)
        return Solution(top.sigma, w_to_space(generator, space, top.directions, self.layers))


class GANSpace(Solver):
    """GANSpace (Härkönen et al., NeurIPS 2020): PCA of w = mapping(z) over ``num_samples`` z ~ N(0, I)
    (torch seed ``seed``); the top ``max_directions`` components are applied at the w+ entries ``layers``
    and mapped to the run's space (module docstring). With ``basis: s`` the PCA is of the styles s instead
    (run space s only; the project's variant), and ``layers`` must be null: harskish/ganspace applies only
    latent (w) components to a range of w+ entries (a PCA of other activations is first regressed back onto
    the latent), and a style component is already a direction of every layer. σ = each component's variance.
    The default 300,000 samples are the reference's (harskish/ganspace); ``max_directions`` 10 is the
    project's (the reference keeps 80 components; the first 10 are the same). The covariance is accumulated
    in float64 over batches of ``batch`` samples, so any number fits in memory and the PCA is exact, where
    the reference's incremental PCA approximates it. Needs ``Problem.generator`` and ``space``; ignores the Grams."""

    needs_grams = False

    def __init__(self, num_samples: int = schema.GANSpace.num_samples, basis: str = schema.GANSpace.basis.value,
                 layers: list[int] | None = schema.GANSpace.layers, max_directions: int | None = schema.GANSpace.max_directions,
                 seed: int = schema.GANSpace.seed, batch: int = schema.GANSpace.batch) -> None:
        enforce(SOLVER, {"num_samples": num_samples, "batch": batch, "max_directions": max_directions}, "solver.")
        if basis not in BASES:
            raise ValueError(f"ganspace.basis: unknown {basis!r}; allowed values: {', '.join(BASES)}")
        if basis == "s" and layers is not None:
            raise ValueError(f"ganspace.layers {layers} with basis s: style components are not applied to w+ entries; "
                             f"set layers: null, or basis: w to apply w components to chosen entries")
        self.num_samples, self.basis, self.layers = num_samples, basis, layers
        self.max_directions, self.seed, self.batch = max_directions, seed, batch

    def __call__(self, problem: Problem) -> Solution:
        generator, space = _needs(problem, "GANSpace")
        if self.basis == "s" and space != "s":
            raise ValueError(f"ganspace.basis s: components of s are directions of space s, the run's is {space!r}")
        gen = torch.Generator().manual_seed(self.seed)
        total = second = None
        with torch.no_grad():
            for start in range(0, self.num_samples, self.batch):
                z = torch.randn(min(self.batch, self.num_samples - start), generator.z_dim, generator=gen)
                x = generator.encode(z, self.basis).double()
                total = x.sum(0) if total is None else total + x.sum(0)
                second = x.T @ x if second is None else second + x.T @ x
        mean = total / self.num_samples
        cov = (second - self.num_samples * torch.outer(mean, mean)) / max(self.num_samples - 1, 1)
        lam, q = torch.linalg.eigh(cov)
        top = ranked(lam, q, self.max_directions)
        directions = top.directions if self.basis == "s" else w_to_space(generator, space, top.directions, self.layers)
        return Solution(top.sigma, directions)


def _needs(problem: Problem, who: str) -> tuple[Generator, str]:
    if problem.generator is None or problem.space is None:
        raise ValueError(f"{who} needs the generator and the space in the Problem (Problem.generator, Problem.space)")
    return problem.generator, problem.space

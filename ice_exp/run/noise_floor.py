"""Each suppress term's noise floor: the share of its largest change that is the analyzers' own error.

A suppress term built on a trained network (a FAN's landmarks, a BiSeNet's masks) moves a little under
changes that, read by exact analyzers, leave it still: the network's error has a Jacobian too. A ratio
below that error calls a true direction "moving" and blocks it (experiments/results/trained_analyzers:
the trained FAN's other landmarks see the true factors at 2e-3–3e-2 of λ_max, 20–300× the ratio 1e-4).

The floor is measured like an analyzer's validation error, against exact analyzers on validation faces
(toyface's oracles, on worlds the scores never use): with J the term's Jacobian read through the measured
analyzers and J* through the exact ones at the same faces, E = Σ (J − J*)ᵀ(J − J*) is the Gram of the error
and the floor is λ_max(E) / λ_max(Σ JᵀJ), on the term's own scale. An eigenvalue below it is a change the
term cannot tell from its analyzer's error, so a ratio is raised to it (:func:`floored_ratios`), and a
term whose floor reaches 1 is all error.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ice_exp.engine.frame import FramePasses
from ice_exp.run.build import Setup


def suppress_jacobians(setup: Setup, u: Tensor) -> dict[str, Tensor]:
    """{suppress term: its Jacobian [m, D] float64} at the latent point u [D], exact (no sketch)."""
    frames = FramePasses(setup.generator, setup.terms, u, setup.space)
    parts = frames.parts()
    j, _ = frames.jacobian(parts)
    rows = dict(zip(parts, torch.split(j, [frames.sizes[p] for p in parts])))
    return {t.name: rows[(t.criterion, t.part)].double() for t in setup.terms.suppress}


def noise_floors(measured: Setup, exact: Setup, z: Tensor) -> dict[str, float]:
    """{suppress term: λ_max(E) / λ_max(Σ JᵀJ)} over the faces z [N, z_dim] (see the module docstring).
    ``measured`` and ``exact`` are the same run (generator, criteria) with different analyzers."""
    if [t.name for t in measured.terms.suppress] != [t.name for t in exact.terms.suppress]:
        raise ValueError("noise_floors: the measured and exact setups must have the same suppress terms")
    if len(z) == 0:
        raise ValueError("noise_floors: no validation faces")
    error: dict[str, Tensor] = {}
    gram: dict[str, Tensor] = {}
    for zi in z:
        u = measured.generator.encode(zi[None], measured.space)[0]
        ours, true = suppress_jacobians(measured, u), suppress_jacobians(exact, u)
        for name, j in ours.items():
            if j.shape != true[name].shape:
                raise ValueError(f"noise_floors: term {name} has {j.shape[0]} rows measured, {true[name].shape[0]} exact")
            d = j - true[name]
            error[name] = error.get(name, 0) + d.T @ d
            gram[name] = gram.get(name, 0) + j.T @ j
    return {name: float(torch.linalg.eigvalsh(error[name])[-1] / torch.linalg.eigvalsh(gram[name])[-1].clamp_min(1e-300))
            for name in error}


def floored_ratios(ratios: dict[str, float], floors: dict[str, float]) -> dict[str, float | None]:
    """Each term's ratio raised to its noise floor where the floor is higher (a term without a floor keeps
    its ratio); None for a term whose floor is 1 or more: its largest change is error, it can tell nothing
    from its analyzer's error and should be left out."""
    return {name: None if floors.get(name, 0.0) >= 1 else max(r, floors.get(name, 0.0)) for name, r in ratios.items()}

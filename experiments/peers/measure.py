"""Measures each peer against its authors' reference procedure (the numbers in docs/peers.md).

``OMP_NUM_THREADS=1 python -m experiments.peers.measure [sefa] [lowrankgan] [ganspace]`` (all by default).
The references are re-enacted step by step in numpy from their published procedure (genforce/sefa's
factorize_weight; zhujiapeng/LowRankGAN's compute_directions and RobustPCA), not imported.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from ice_exp.build import build_setup
from ice_exp.config import CONF_DIR
from ice_exp.engine.accumulate import accumulate
from ice_exp.generators.stylegan2 import build_stylegan2
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.linalg import principal_angles
from ice_exp.solvers.base import Problem, SuppressTerm
from ice_exp.solvers.latent import GANSpace, SeFa, affine_matrix
from ice_exp.solvers.peers import LowRankGAN, robust_pca


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest principal angle (degrees) between two spans (over min(dim a, dim b) angles)."""
    return float(principal_angles(torch.as_tensor(a).double(), torch.as_tensor(b).double()).max())


def sefa() -> None:
    """Rows read per torgb option, the angle between the options, and ours vs genforce's factorisation
    (raw affine weights by layer name, float32, np.linalg.eig in its own order)."""
    for label, g in [("config-f 1024 px (random weights, seed 0)", build_stylegan2(resolution=1024)),
                     ("64 px, w_dim 64 (random weights, seed 0)", build_stylegan2(resolution=64, z_dim=64, w_dim=64,
                                                                                 channel_base=1024, channel_max=64))]:
        problem = Problem(torch.eye(g.w_dim), generator=g, space="w")
        rows = {t: affine_matrix(g, torgb=t).shape[0] for t in ("last", "all", "none")}
        ours = {t: SeFa(torgb=t)(problem).directions for t in ("last", "all")}
        net, last = g.synthesis_network, g.style_names[g.torgb_layers[-1]]
        weight = np.concatenate([net.layer(n).affine.weight.detach().numpy().T for n in g.style_names
                                 if not n.endswith("torgb") or n == last], axis=1).astype(np.float32)
        weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
        values, vectors = np.linalg.eig(weight.dot(weight.T))
        reference = torch.from_numpy(vectors[:, :10].real.copy())
        print(f"SeFa, {label}: rows {rows}")
        print(f"  last vs all: top direction {angle(ours['last'][:, :1], ours['all'][:, :1]):.1f}°, "
              f"top-10 span {angle(ours['last'], ours['all']):.1f}°")
        print(f"  ours (torgb last) vs genforce re-enacted: top-10 span {angle(ours['last'], reference):.2e}°, "
              f"eig's first 10 in descending order: {bool(np.all(np.diff(values.real[:10]) <= 0))}, "
              f"are the 10 largest: {bool(np.isin(np.sort(values.real)[-10:], values.real[:10]).all())}")


def reference_rpca(m: np.ndarray, lam: float = 1 / 60, max_iter: int = 10000) -> tuple[np.ndarray, int]:
    """zhujiapeng/LowRankGAN's robust PCA: ADMM with fixed μ = n²/(4‖M‖₁), stop at ‖L + S − M‖_F ≤ 1e-7‖M‖_F."""
    mu = m.size / (4 * np.linalg.norm(m, ord=1))
    low, sparse, dual = np.zeros_like(m), np.zeros_like(m), np.zeros_like(m)
    shrink = lambda x, tau: np.sign(x) * np.maximum(np.abs(x) - tau, 0)  # noqa: E731
    for step in range(1, max_iter + 1):
        u, s, vh = np.linalg.svd(m - sparse - dual / mu, full_matrices=False)
        low = (u * shrink(s, 1 / mu)) @ vh
        sparse = shrink(m - low - dual / mu, lam / mu)
        dual = dual + mu * (low + sparse - m)
        if np.linalg.norm(low + sparse - m) <= 1e-7 * np.linalg.norm(m):
            break
    return low, step


def toyface_problem(overrides: list[str]) -> Problem:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("compare", overrides=["logger=none", *overrides])
    task = build_setup(cfg)
    return Problem.of(accumulate(task.grams, task.z_train), task.terms, task.generator, task.space)


def lowrankgan() -> None:
    """Ranks and directions of the reference defaults vs the project's variant on toyface mouth_shape (space s),
    the relaxation clamp, and our robust PCA vs the reference's ADMM."""
    problem = toyface_problem([])
    fg, bg = problem.activate.double(), problem.background()
    default = LowRankGAN()(problem)
    project = LowRankGAN(rho=1e-2, min_removed=0, order="gain")(problem)
    print(f"LowRankGAN, toyface mouth_shape, space s (D = {fg.shape[0]}):")
    print(f"  directions: reference defaults {default.directions.shape[1]}, project variant {project.directions.shape[1]}; "
          f"largest angle between their spans {angle(default.directions, project.directions):.1f}°")
    raw = LowRankGAN(rpca=False)(problem).directions.shape[1]
    print(f"  without robust PCA, numerical rank of the raw Gram: {raw} directions")
    bg_rank = int((torch.linalg.svdvals(bg) > bg.shape[0] * torch.finfo(torch.float64).eps * torch.linalg.svdvals(bg)[0]).sum())
    for relax in (0, 10**6):
        clamped, free = LowRankGAN(num_relax=relax)(problem), LowRankGAN(num_relax=relax, min_removed=0)(problem)
        print(f"  num_relax {relax}: min_removed 1 vs 0: {angle(clamped.directions, free.directions):.1f}° "
              f"(raw background numerical rank {bg_rank})")
    started = time.perf_counter()
    ref_f, steps_f = reference_rpca(fg.numpy())
    ref_b, steps_b = reference_rpca(bg.numpy())
    ref_s = time.perf_counter() - started
    started = time.perf_counter()
    ours_f, ours_b = robust_pca(fg)[0], robust_pca(bg)[0]
    ours_s = time.perf_counter() - started
    rel = lambda a, b: float(np.linalg.norm(a.numpy() - b) / np.linalg.norm(b))  # noqa: E731
    print(f"  robust PCA, ours vs reference ADMM ({steps_f}, {steps_b} iterations, {ref_s:.1f} s; ours {ours_s:.1f} s): "
          f"‖ΔL‖/‖L‖ foreground {rel(ours_f, ref_f):.1e}, background {rel(ours_b, ref_b):.1e}; "
          f"numerical ranks ours {np.linalg.matrix_rank(ours_f.numpy())}/{np.linalg.matrix_rank(ours_b.numpy())}, "
          f"reference {np.linalg.matrix_rank(ref_f)}/{np.linalg.matrix_rank(ref_b)}")
    on_ref = LowRankGAN(rpca=False)(Problem(torch.from_numpy(ref_f), [SuppressTerm("b", torch.from_numpy(ref_b), 0.0)]))
    print(f"  directions from the reference's L_f, L_b: {on_ref.directions.shape[1]}, "
          f"largest angle to ours {angle(on_ref.directions, default.directions):.2e}°")


def ganspace() -> None:
    """Cost of the default 300,000 samples, and how far 10,000 samples are from them."""
    toy = ToyFaceGenerator()
    for basis in ("w", "s"):
        started = time.perf_counter()
        full = GANSpace(basis=basis)(Problem(torch.eye(1), generator=toy, space=basis))
        seconds = time.perf_counter() - started
        few = GANSpace(num_samples=10_000, basis=basis)(Problem(torch.eye(1), generator=toy, space=basis))
        print(f"GANSpace, toyface basis {basis}: 300,000 samples in {seconds:.2f} s; top-10 span of 10,000 samples "
              f"{angle(few.directions, full.directions):.2f}° from it (top direction {angle(few.directions[:, :1], full.directions[:, :1]):.2f}°)")
    g = build_stylegan2(resolution=1024)
    started = time.perf_counter()
    GANSpace()(Problem(torch.eye(1), generator=g, space="w"))
    print(f"GANSpace, StyleGAN2 config-f mapping, CPU {torch.get_num_threads()} thread(s): 300,000 samples in "
          f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    chosen = sys.argv[1:] or ["sefa", "lowrankgan", "ganspace"]
    for name in chosen:
        {"sefa": sefa, "lowrankgan": lowrankgan, "ganspace": ganspace}[name]()

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

from ice_exp.common.linalg import principal_angles
from ice_exp.config import CONF_DIR
from ice_exp.engine.accumulate import accumulate
from ice_exp.generators.stylegan2 import build_stylegan2
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.run.build import build_setup
from ice_exp.solvers.base import Problem, SuppressTerm
from ice_exp.solvers.latent import GANSpace, SeFa, affine_matrix
from ice_exp.solvers.peers import RPCA_METHODS, LowRankGAN, robust_pca


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


def reference_rpca(m: np.ndarray, lam: float = 1 / 60, max_iter: int = 10000) -> tuple[np.ndarray, np.ndarray, int]:
    """zhujiapeng/LowRankGAN's robust PCA: ADMM with fixed μ = n²/(4‖M‖₁) (numpy's matrix 1-norm), SVD
    thresholding, stop at ‖L + S − M‖_F ≤ 1e-7‖M‖_F or after max_iter steps. Returns (L, S, steps)."""
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
    return low, sparse, step


def reference_directions(low_f: np.ndarray, low_b: np.ndarray) -> np.ndarray:
    """zhujiapeng/LowRankGAN's compute_directions after robust PCA (num_relax 0): F = the top matrix_rank(L_f)
    right singular vectors, the top clamp(matrix_rank(L_b), 1, D − 1) of L_b removed, F projected, normalised."""
    principal = np.linalg.svd(low_f)[2][:np.linalg.matrix_rank(low_f)].T
    null = np.linalg.svd(low_b)[2][min(max(1, np.linalg.matrix_rank(low_b)), len(low_b) - 1):].T
    projected = null @ null.T @ principal
    return projected / np.linalg.norm(projected, axis=0)


def objective(low: np.ndarray, sparse: np.ndarray, lam: float = 1 / 60) -> float:
    """Robust PCA's objective ‖L‖_* + λ‖S‖₁ (entrywise)."""
    return float(np.linalg.svd(low, compute_uv=False).sum() + lam * np.abs(sparse).sum())


def end_to_end(label: str, problem: Problem) -> None:
    """LowRankGAN with each robust PCA method vs the reference re-enacted in numpy (robust PCA and the
    steps after it) on the same M_f, M_b: direction count, largest angle between the spans and between the
    top directions, the robust PCA ranks, steps, ‖ΔL‖/‖L_ref‖, objective and time."""
    fg, bg = problem.activate.double(), problem.background()
    started = time.perf_counter()
    ref = [reference_rpca(m.numpy()) for m in (fg, bg)]
    reference = torch.from_numpy(reference_directions(ref[0][0], ref[1][0]))
    print(f"LowRankGAN end to end, {label} (D = {fg.shape[0]}): reference {reference.shape[1]} directions, "
          f"ranks L_f/L_b {'/'.join(str(np.linalg.matrix_rank(r[0])) for r in ref)}, "
          f"steps {'/'.join(str(r[2]) for r in ref)}, objective {'/'.join(f'{objective(*r[:2]):.4g}' for r in ref)}, "
          f"{time.perf_counter() - started:.0f} s (numpy, SVD)")
    for method in RPCA_METHODS:
        started = time.perf_counter()
        ours = LowRankGAN(rpca_method=method)(problem).directions
        seconds = time.perf_counter() - started
        parts = [robust_pca(m, method=method) for m in (fg, bg)]
        both = ours.shape[1] > 0 and reference.shape[1] > 0
        print(f"  {method}: {ours.shape[1]} directions, largest angle to the reference "
              + (f"{angle(ours, reference):.2e}° (top direction {angle(ours[:, :1], reference[:, :1]):.2e}°)" if both else "n/a")
              + f", ranks {'/'.join(str(np.linalg.matrix_rank(low.numpy())) for low, _, _ in parts)}, "
              f"steps {'/'.join(str(n) for _, _, n in parts)}, ‖ΔL‖/‖L_ref‖ "
              + "/".join(f"{np.linalg.norm(low.numpy() - r[0]) / np.linalg.norm(r[0]):.1e}" for (low, _, _), r in zip(parts, ref))
              + f", objective {'/'.join(f'{objective(low.numpy(), sparse.numpy()):.4g}' for low, sparse, _ in parts)}, "
              f"solver {seconds:.0f} s")


def stylegan2_problem() -> Problem:
    """LowRankGAN's setting at its paper's size, D = 512: the Jacobian of the channel-averaged image w.r.t. w
    at one sample (z seed 0) of a 32 px StyleGAN2 with w_dim 512 and random weights (seed 0); M_f over the
    central 16 × 16 box, M_b over the other pixels, each normalised by its pixel count, as compute_directions."""
    g = build_stylegan2(resolution=32, z_dim=512, w_dim=512, mapping_layers=2, channel_base=512, channel_max=64)
    w = g.encode(torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(0)), "w")[0]
    with torch.enable_grad():
        jac = torch.func.jacfwd(lambda v: g.decode(v[None], "w").image[0].mean(0).flatten())(w).double()
    box = torch.zeros(g.resolution, g.resolution, dtype=torch.bool)
    box[8:24, 8:24] = True
    inside, outside = jac[box.flatten()], jac[~box.flatten()]
    return Problem(inside.T @ inside / len(inside), [SuppressTerm("outside", outside.T @ outside / len(outside), 0.0)])


def toyface_problem(overrides: list[str]) -> Problem:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("compare", overrides=["logger=none", *overrides])
    task = build_setup(cfg)
    return Problem.of(accumulate(task.sample_grams, task.z_train), task.terms, task.generator, task.space)


def lowrankgan() -> None:
    """Ranks and directions of the reference defaults vs the project's variant on toyface mouth_shape (space s),
    the relaxation clamp, and each robust PCA method end to end vs the reference, there and at D = 512."""
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
    end_to_end("toyface mouth_shape, space s", problem)
    end_to_end("StyleGAN2 w, 32 px, random weights", stylegan2_problem())


def ganspace() -> None:
    """Cost of the default 300,000 samples, and how far 10,000 samples are from them."""
    toy = ToyFaceGenerator()
    for basis in ("w", "s"):
        started = time.perf_counter()
        full = GANSpace(basis=basis)(Problem(torch.eye(1), generator=toy, space=basis))
        seconds = time.perf_counter() - started
        few = GANSpace(num_samples=10_000, basis=basis)(Problem(torch.eye(1), generator=toy, space=basis))
        print(f"GANSpace, toyface basis {basis}: 300,000 samples in {seconds:.2f} s; top-10 span of 10,000 samples "
              f"{angle(few.directions, full.directions):.2f}° from it "
              f"(top direction {angle(few.directions[:, :1], full.directions[:, :1]):.2f}°)")
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

"""Peer solvers on problems with a known answer, and the comparison table on toyface."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate

from ice_exp.common.linalg import principal_angles
from ice_exp.config import CONF_DIR
from ice_exp.generators.base import Frame, Generator
from ice_exp.generators.stylegan2 import build_stylegan2
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.run.build import compose_solver
from ice_exp.run.comparison import compare
from ice_exp.solvers.base import Problem, Solution, SuppressTerm
from ice_exp.solvers.latent import GANSpace, SeFa, affine_matrix
from ice_exp.solvers.peers import LowRankGAN, ReSeFa, _shrink_full, robust_pca, shrink_eigenvalues
from tests.conftest import table_rows
from tests.test_stylegan2 import tiny_generator

E = torch.eye(6, dtype=torch.float64)


def _same_direction(a: torch.Tensor, b: torch.Tensor) -> bool:
    return abs(float(a @ b)) > 1 - 1e-9


def test_background_sums_suppress_terms_at_unit_scale():
    problem = Problem(E, [SuppressTerm("a", 5 * torch.outer(E[0], E[0]), 0.1), SuppressTerm("b", 0.01 * torch.outer(E[1], E[1]), 0.1)])
    assert torch.allclose(problem.background(), torch.outer(E[0], E[0]) + torch.outer(E[1], E[1]))


def test_lowrankgan_projects_the_foreground_subspace_on_the_background_null_space():
    """Foreground spans e0 and (e1 + e2)/√2 with gains 4 and 2; the background occupies e2. Projected on the
    null space (e2 removed) the directions are e0 and e1, in the foreground's order with its singular values
    (the reference); ``order: gain`` scores them by vᵀM_f v instead."""
    fg_dirs = torch.stack([E[0], (E[1] + E[2]) / math.sqrt(2)], 1)
    problem = Problem(fg_dirs @ torch.diag(torch.tensor([4.0, 2.0], dtype=torch.float64)) @ fg_dirs.T,
                      [SuppressTerm("bg", torch.outer(E[2], E[2]), 1e-2)])
    solution = LowRankGAN(rpca=False)(problem)
    assert solution.directions.shape[1] == 2
    assert _same_direction(solution.directions[:, 0], E[0]) and _same_direction(solution.directions[:, 1], E[1])
    assert torch.allclose(solution.sigma, torch.tensor([4.0, 2.0], dtype=torch.float64))
    gain = LowRankGAN(rpca=False, order="gain")(problem)
    assert torch.allclose(gain.sigma, torch.tensor([4.0, 1.0], dtype=torch.float64))


def test_lowrankgan_always_removes_a_background_direction_unless_told_not_to():
    """The background has rank 1 (e2): relaxing by 1 or more still removes one direction (the reference's
    clamp), so the second direction stays e1; with min_removed 0 nothing is removed and it is (e1 + e2)/√2."""
    fg_dirs = torch.stack([E[0], (E[1] + E[2]) / math.sqrt(2)], 1)
    problem = Problem(fg_dirs @ fg_dirs.T, [SuppressTerm("bg", torch.outer(E[2], E[2]), 1e-2)])
    for relax in (1, 3):
        assert _same_direction(LowRankGAN(rpca=False, num_relax=relax)(problem).directions[:, 1], E[1])
    kept = LowRankGAN(rpca=False, num_relax=1, min_removed=0)(problem)
    assert principal_angles(kept.directions, fg_dirs).max() < 1e-4  # degrees; arccos round-off is ~1e-6
    alone = LowRankGAN(rpca=False)(Problem(problem.activate))  # no suppress term: a zero background, none removed
    assert principal_angles(alone.directions, fg_dirs).max() < 1e-4


def test_lowrankgan_ranks_are_numerical_by_default():
    """Foreground singular values 4, 1e-3 and -2 (indefinite, as robust PCA's L may be): the numerical rank
    (numpy's matrix_rank, |λ| > D·eps·σ_max) keeps all three, in singular-value order; rho = 1e-2 keeps 2.
    The background diag(1, 1e-9) has numerical rank 2 (both removed); null_ratio 1e-6 makes it rank 1."""
    fg = torch.diag(torch.tensor([4.0, 0, 0, 1e-3, -2.0, 0], dtype=torch.float64))
    problem = Problem(fg, [SuppressTerm("bg", torch.diag(torch.tensor([0, 1.0, 1e-9, 0, 0, 0], dtype=torch.float64)), 1e-2)])
    solution = LowRankGAN(rpca=False)(problem)
    assert torch.allclose(solution.sigma, torch.tensor([4.0, 2.0, 1e-3], dtype=torch.float64))
    for k, axis in enumerate((0, 4, 3)):
        assert _same_direction(solution.directions[:, k], E[axis])
    assert LowRankGAN(rpca=False, rho=1e-2)(problem).directions.shape[1] == 2
    wide = Problem(torch.eye(6, dtype=torch.float64), problem.suppress)
    assert LowRankGAN(rpca=False)(wide).directions.abs()[1:3].max() < 1e-12  # e1, e2 both removed
    assert LowRankGAN(rpca=False, null_ratio=1e-6)(wide).directions.abs()[2].max() > 0.1  # e2 kept


def test_robust_pca_separates_low_rank_from_sparse():
    n = 40
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(n, 2, generator=gen, dtype=torch.float64))[0]
    low = basis @ torch.diag(torch.tensor([30.0, 10.0], dtype=torch.float64)) @ basis.T
    sparse = torch.zeros(n, n, dtype=torch.float64)
    for i, j in [(0, 5), (7, 30), (12, 12), (20, 33)]:
        sparse[i, j] = sparse[j, i] = 5.0
    for method in ("admm", "ialm"):
        found_low, found_sparse, _ = robust_pca(low + sparse, lam=1 / math.sqrt(n), method=method)
        assert (found_low - low).norm() / low.norm() < 1e-3, method
        assert (found_sparse - sparse).norm() / sparse.norm() < 1e-2, method


def test_shrink_eigenvalues_computes_only_the_survivors_and_matches_the_full_decomposition():
    """robust PCA's thresholding by the surviving eigenpairs only (dsytrd, dstebz, dstein, dormqr) equals the
    full eigendecomposition's to round-off: a few survivors of either sign, a matrix that splits into blocks
    (zero off-diagonals after the reduction), none surviving, an asymmetric upper triangle (both read the
    lower), and the fallback where many survive."""
    gen = torch.Generator().manual_seed(0)
    d = 96
    basis = torch.linalg.qr(torch.randn(d, 6, generator=gen, dtype=torch.float64))[0]
    low = basis @ torch.diag(torch.tensor([9.0, 5, 3, -4, -2.5, 0.5], dtype=torch.float64)) @ basis.T
    noise = 0.01 * torch.randn(d, d, generator=gen, dtype=torch.float64)
    blocks = torch.block_diag(low[:48, :48], low[48:, 48:])
    cases = [(low + noise + noise.T, 1.0), (low + noise, 1.0), (blocks, 1.0), (low, 20.0),
             (torch.randn(d, d, generator=gen, dtype=torch.float64), 0.1)]
    for x, t in cases:
        full = _shrink_full(x, t)
        assert (shrink_eigenvalues(x, t) - full).abs().max() <= 1e-12 * max(float(full.abs().max()), 1.0)
    assert shrink_eigenvalues(low, 20.0).abs().max() == 0

def _reference_lowrankgan(fg: np.ndarray, bg: np.ndarray, lam: float) -> np.ndarray:
    """zhujiapeng/LowRankGAN's compute_directions on two Grams, written out in numpy: its RobustPCA loop (SVD
    thresholding, fixed μ = n²/(4‖M‖₁) with numpy's matrix 1-norm, dual from 0, stop at ‖L + S − M‖_F ≤
    1e-7‖M‖_F or after 10,000 steps), ranks by matrix_rank, at least one background direction removed."""
    def low_rank(m: np.ndarray) -> np.ndarray:
        mu = m.size / (4 * np.linalg.norm(m, ord=1))
        low = sparse = dual = np.zeros_like(m)
        for _ in range(10_000):
            u, s, vh = np.linalg.svd(m - sparse - dual / mu, full_matrices=False)
            low = u @ np.diag(np.maximum(s - 1 / mu, 0)) @ vh
            x = m - low - dual / mu
            sparse = np.sign(x) * np.maximum(np.abs(x) - lam / mu, 0)
            dual = dual + mu * (low + sparse - m)
            if np.linalg.norm(low + sparse - m) <= 1e-7 * np.linalg.norm(m):
                break
        return low
    low_f, low_b = low_rank(fg), low_rank(bg)
    principal = np.linalg.svd(low_f)[2][:np.linalg.matrix_rank(low_f)].T
    null = np.linalg.svd(low_b)[2][min(max(1, np.linalg.matrix_rank(low_b)), len(bg) - 1):].T
    projected = null @ null.T @ principal
    return projected / np.linalg.norm(projected, axis=0)


def _random_grams(d: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background Grams of random Jacobians (6 and 30 rows), the background at unit λ_max as
    Problem.background() scales it, so the reference and the solver factor the same matrices."""
    rng = np.random.default_rng(seed)
    jf = rng.standard_normal((6, d)) * np.linspace(1, 0.1, d)
    jb = rng.standard_normal((30, d)) * rng.random(d) ** 3
    bg = jb.T @ jb
    return jf.T @ jf / 6, bg / np.linalg.eigvalsh(bg)[-1]


def test_lowrankgan_default_runs_the_references_robust_pca():
    """End to end against the reference written out above, D = 24, λ = 1/4 (the reference's ``--lamb 4``; at
    its default 1/60 and so small a D robust PCA empties the background, next test). ``rpca_method: ialm``
    solves the same program but stops elsewhere, and its ranks, so its directions, differ."""
    fg, bg = _random_grams()
    problem = Problem(torch.from_numpy(fg), [SuppressTerm("bg", torch.from_numpy(bg), 0.0)])
    reference = torch.from_numpy(_reference_lowrankgan(fg, bg, lam=0.25))
    ours = LowRankGAN(lam=0.25)(problem).directions
    assert ours.shape == reference.shape and 0 < reference.shape[1] < 24
    assert principal_angles(ours, reference).max() < 1e-4  # degrees; arccos round-off is ~1e-6
    assert LowRankGAN(lam=0.25, rpca_method="ialm")(problem).directions.shape != reference.shape


def test_lowrankgan_removes_nothing_when_robust_pca_empties_the_background():
    """At λ = 1/60 and D = 24 robust PCA leaves L_b = 0 (the whole background is sparse). The project then
    removes nothing: there is no low-rank background to avoid, and the directions are L_f's principal
    subspace. The reference removes the first singular vector of the zero matrix, which numpy returns as the
    coordinate axis e0: an artefact of the basis, which turns the direction here by more than a degree."""
    fg, bg = _random_grams()
    assert robust_pca(torch.from_numpy(bg))[0].abs().max() == 0
    low_f = robust_pca(torch.from_numpy(fg))[0]
    principal = torch.linalg.svd(low_f)[2][:int(torch.linalg.matrix_rank(low_f))].T
    ours = LowRankGAN()(Problem(torch.from_numpy(fg), [SuppressTerm("bg", torch.from_numpy(bg), 0.0)])).directions
    assert ours.shape == principal.shape and principal_angles(ours, principal).max() < 1e-4
    assert principal_angles(ours, torch.from_numpy(_reference_lowrankgan(fg, bg, lam=1 / 60))).max() > 1


def test_lowrankgan_null_ratio_cuts_strictly_above_like_matrix_rank():
    """Background singular values 2 and 1, null_ratio 0.5: 1 is not > 0.5·2, so only e0 is removed (numpy's
    matrix_rank, which the reference calls, also counts σ > cut) and the foreground e1 is kept."""
    bg = torch.diag(torch.tensor([2.0, 1, 0, 0, 0, 0], dtype=torch.float64))
    solution = LowRankGAN(rpca=False, null_ratio=0.5)(Problem(torch.outer(E[1], E[1]), [SuppressTerm("bg", bg, 0.0)]))
    assert solution.directions.shape[1] == 1 and _same_direction(solution.directions[:, 0], E[1])


def test_lowrankgan_rejects_an_unknown_robust_pca_method():
    with pytest.raises(ValueError, match="rpca_method: unknown 'svd'; allowed values: admm, ialm"):
        LowRankGAN(rpca_method="svd")


def test_resefa_solves_the_generalised_eigenproblem():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 6, generator=gen, dtype=torch.float64), torch.randn(3, 6, generator=gen, dtype=torch.float64)
    fg, bg = a @ a.T, b.T @ b  # the background is rank 3: ReSeFa's τ·tr(M_b)·I makes it definite
    solution = ReSeFa(tau=1e-3, rho=0.0)(Problem(fg, [SuppressTerm("bg", bg, 1e-2)]))
    scaled = bg / torch.linalg.eigvalsh(bg)[-1]  # Problem.background() scales each term to unit λ_max
    regularised = scaled + 1e-3 * torch.trace(scaled) * torch.eye(6, dtype=torch.float64)
    lam, vec = scipy.linalg.eigh(fg.numpy(), regularised.numpy())
    assert torch.allclose(solution.sigma, torch.from_numpy(lam[::-1].copy()), rtol=1e-8)
    expected = torch.from_numpy(vec[:, ::-1].copy())
    for k in range(6):
        assert _same_direction(solution.directions[:, k], expected[:, k] / expected[:, k].norm())
    diagonal = ReSeFa()(Problem(torch.diag(torch.tensor([1.0, 2, 3, 0, 0, 0], dtype=torch.float64)),
                                [SuppressTerm("bg", torch.diag(torch.tensor([0.0, 0, 1, 1, 1, 1], dtype=torch.float64)), 1e-2)]))
    assert _same_direction(diagonal.directions[:, 0], E[1]) and _same_direction(diagonal.directions[:, 1], E[0])


def test_sefa_finds_the_top_eigenvectors_of_known_affine_weights():
    """toyface with designed affines: after row normalisation 120 style channels read w along e0, 60 along
    e1 and 12 along e2, so AᵀA = diag(120, 60, 12, 0...): SeFa returns e0, e1, e2 with those eigenvalues."""
    g = ToyFaceGenerator(resolution=32, dtype=torch.float64)
    rows = torch.cat([torch.eye(g.w_dim, dtype=torch.float64)[i].expand(n, -1) * (1 + torch.rand(n, 1, dtype=torch.float64))
                      for i, n in ((0, 120), (1, 60), (2, 12))])
    g.affine_weight.copy_(rows)
    problem = Problem(torch.eye(g.space_dim("w"), dtype=torch.float64), generator=g, space="w")
    solution = SeFa(max_directions=3)(problem)
    assert torch.allclose(solution.sigma, torch.tensor([120.0, 60, 12], dtype=torch.float64))
    for k in range(3):
        assert _same_direction(solution.directions[:, k], torch.eye(g.w_dim, dtype=torch.float64)[k])
    in_s = SeFa(max_directions=3)(Problem(torch.eye(g.s_dim, dtype=torch.float64), generator=g, space="s"))
    expected = g.affine_weight @ solution.directions  # styles move by A v
    assert principal_angles(in_s.directions, expected).max() < 1e-4  # degrees; arccos round-off is ~1e-6


def test_affine_matrix_reads_stylegan2_affines():
    g = build_stylegan2(resolution=16, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8)
    net = g.synthesis_network
    expected = torch.cat([net.layer(name).affine.weight * net.layer(name).affine.weight_gain
                          for k in range(g.num_ws) for name, _, idx in net.layout if idx == k]).double()
    assert torch.allclose(affine_matrix(g), expected, atol=1e-6)


def test_sefa_default_reads_the_conv_affines_and_the_last_torgb_on_stylegan2():
    """genforce/sefa on StyleGAN2: the conv affines plus only the final toRGB affine, each style channel
    normalised, eigenvectors of AᵀA. Built here from the named layers of a tiny random StyleGAN2; ``torgb``
    all / none read every toRGB affine / none, and the last toRGB alone is w+ entry num_ws − 1."""
    g = tiny_generator(seed=3)
    net, last = g.synthesis_network, g.style_names[g.torgb_layers[-1]]
    assert [g.style_names[i] for i in g.torgb_layers] == ["b4.torgb", "b8.torgb", "b16.torgb", "b32.torgb"]
    weights = {name: (net.layer(name).affine.weight * net.layer(name).affine.weight_gain).double() for name in g.style_names}
    reference = torch.cat([w for name, w in weights.items() if not name.endswith("torgb") or name == last])
    reference = reference / reference.norm(dim=1, keepdim=True)
    sigma, v = torch.linalg.eigh(reference.T @ reference)
    solution = SeFa(max_directions=3)(Problem(torch.eye(g.w_dim), generator=g, space="w"))
    assert torch.allclose(solution.sigma, sigma.flip(0)[:3], rtol=1e-9)
    assert principal_angles(solution.directions.double(), v.flip(1)[:, :3]).max() < 1e-3
    every = SeFa(torgb="all", max_directions=3)(Problem(torch.eye(g.w_dim), generator=g, space="w"))
    assert principal_angles(every.directions.double(), v.flip(1)[:, :3]).max() > 1  # degrees: the choice matters
    rows = {option: affine_matrix(g, torgb=option).shape[0] for option in ("last", "all", "none")}
    assert rows == {"last": g.s_dim_without_torgb + g.style_dims[-1], "all": g.s_dim, "none": g.s_dim_without_torgb}
    assert torch.allclose(affine_matrix(g, [g.num_ws - 1]), weights[last])
    toy = ToyFaceGenerator(resolution=32)
    assert torch.equal(affine_matrix(toy, torgb="last"), affine_matrix(toy, torgb="all"))  # toyface has no toRGB


def test_sefa_refuses_layers_that_read_no_affine():
    """w+ entry num_ws − 1 feeds only the last toRGB: with torgb none nothing is read, AᵀA = 0, and any 10
    directions would do; an error names the keys instead."""
    g = tiny_generator()
    with pytest.raises(ValueError, match=rf"layers \[{g.num_ws - 1}\] with torgb 'none' read no style-affine weights"):
        SeFa(layers=[g.num_ws - 1], torgb="none")(Problem(torch.eye(g.w_dim), generator=g, space="wp"))


def test_ganspace_refuses_layers_with_basis_s():
    with pytest.raises(ValueError, match=r"ganspace.layers \[0\] with basis s: .* set layers: null, or basis: w"):
        GANSpace(basis="s", layers=[0])


def test_default_direction_counts_keep_the_references_top_directions():
    """The project returns 10 directions where genforce/sefa returns 5 and harskish/ganspace 80: the counts
    only cut one ranked list, so the reference's first 5 (SeFa) and the project's 10 (GANSpace) are the same
    directions, in the same order."""
    g = build_stylegan2(resolution=16, z_dim=16, w_dim=16, mapping_layers=1, channel_base=64, channel_max=16)
    problem = Problem(torch.eye(g.w_dim), generator=g, space="w")
    ten, five = SeFa()(problem).directions, SeFa(max_directions=5)(problem).directions
    assert ten.shape[1] == 10 and torch.allclose(ten[:, :5], five)
    toy = Problem(torch.eye(1), generator=ToyFaceGenerator(resolution=32), space="w")
    eighty = GANSpace(num_samples=5000, max_directions=80)(toy).directions
    assert torch.allclose(GANSpace(num_samples=5000)(toy).directions, eighty[:, :10])


def test_solver_configs_default_to_the_references():
    """Each conf/solver/<peer>.yaml states the reference's choices, and the classes' own defaults agree."""
    expected = {"sefa": {"torgb": "last"}, "ganspace": {"num_samples": 300_000},
                "lowrankgan": {"rho": None, "null_ratio": None, "min_removed": 1, "num_relax": 0, "order": "foreground",
                               "rpca_method": "admm"}}
    for name, values in expected.items():
        cfg = compose_solver(name, [])
        solver, default = instantiate(cfg), get_class(cfg._target_)()
        for key, value in values.items():
            assert getattr(solver, key) == getattr(default, key) == value, (name, key)


class LinearGenerator(Generator):
    """w = C^½ z with a known covariance C; one style layer equal to w (enough for GANSpace)."""

    def __init__(self, root: torch.Tensor) -> None:
        super().__init__()
        self.z_dim = self.w_dim = root.shape[0]
        self.num_ws, self.style_dims, self.resolution = 1, (root.shape[0],), 4
        self.register_buffer("root", root)

    def mapping(self, z, truncation_psi=1.0):
        return z @ self.root.T

    def styles(self, ws):
        return ws[:, 0]

    def synthesis(self, s):
        return Frame(image=torch.zeros(len(s), 3, 4, 4))


def test_ganspace_recovers_a_known_covariance():
    gen = torch.Generator().manual_seed(2)
    basis = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))[0]
    variances = torch.tensor([9.0, 4.0, 1.0, 0.25, 0.05], dtype=torch.float64)
    g = LinearGenerator(basis @ torch.diag(variances.sqrt()) @ basis.T)
    solution = GANSpace(num_samples=40000, max_directions=3, batch=7000)(Problem(torch.eye(5), generator=g, space="w"))
    assert torch.allclose(solution.sigma, variances[:3], rtol=0.05)
    for k in range(3):
        assert abs(float(solution.directions[:, k] @ basis[:, k])) > 0.99


def test_a_solution_cut_to_k_keeps_its_first_k_directions_in_order():
    directions = torch.linalg.qr(torch.randn(6, 4, dtype=torch.float64))[0]
    solution = Solution(torch.tensor([4.0, 3.0, 2.0, 1.0]), directions)
    two = solution.first(2)
    assert torch.equal(two.sigma, solution.sigma[:2]) and torch.equal(two.directions, directions[:, :2])
    assert solution.first(None) is solution and solution.first(9).directions.shape == (6, 4)


def test_generator_peers_need_the_generator():
    with pytest.raises(ValueError, match="needs the generator"):
        SeFa()(Problem(torch.eye(3)))


def test_comparison_table_scores_every_solver_on_toyface(tmp_path):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("compare", overrides=["logger=none", "generator.resolution=64", "samples.indices=[0]",
                                            "samples.eval_num=1", "compare.max_directions=3"])
    rows = compare(cfg, tmp_path)
    assert [r["solver"] for r in rows] == ["early_projection", "late_projection", "lowrankgan", "resefa", "sefa", "ganspace", "random"]
    for row in rows:
        assert "gt/principal_angle_max_deg" in row and "gt/purity_mean" in row and "locality@4" in row, row["solver"]
        assert 1 <= row["directions"] <= 3, row["solver"]  # compare.max_directions cuts every answer
    ice, random = rows[0], rows[-1]
    assert ice["gt/principal_angle_max_deg"] < 10 and random["gt/principal_angle_max_deg"] > 45
    table = (tmp_path / "compare.md").read_text()
    assert [row[0] for row in table_rows(table)] == ["solver", *(r["solver"] for r in rows)]
    assert (tmp_path / "compare.csv").is_file()


def test_compare_composes_each_solver_with_the_solver_overrides_it_has():
    """ice-compare solver.rho=0.5: every solver with a rho gets it (as a discovery run would), the others not."""
    from ice_exp.run.build import compose_solver

    overrides = ["solver.rho=0.5", "solver.torgb=all", "criteria=eye_shape"]
    early, sefa = compose_solver("early_projection", overrides), compose_solver("sefa", overrides)
    assert early.rho == 0.5 and early._target_.endswith("EarlyProjection") and "torgb" not in early
    assert sefa.torgb == "all" and "rho" not in sefa
    assert compose_solver("late_projection", []).rho == 0.01  # conf/solver/late_projection.yaml as it is

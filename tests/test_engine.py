"""JᵀJ engine: every route equals the seed's loop, chunking survives out-of-memory, the ICE result does not
depend on the engine, the cache resumes exactly, and the sketches keep the null spaces the solver uses."""
from __future__ import annotations

import pytest
import torch

from experiments.benchmarks import per_criterion
from ice_exp.analyzers import Analyzers
from ice_exp.common.linalg import eigenspace_angle, principal_angles
from ice_exp.criteria.terms import build_terms
from ice_exp.engine.gram_mean import GramMean
from ice_exp.engine.grams import EXACT, SampleGrams, directional_changes, sample_grams, term_fn
from ice_exp.engine.jacobian import gram, jacobian
from ice_exp.engine.memory import in_chunks
from ice_exp.engine.precision import precision_error, precision_scope
from ice_exp.engine.sketch import range_sketch, topk_gram
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.run.evaluation import evaluate
from ice_exp.solvers.base import Problem, Solution, SuppressTerm
from ice_exp.solvers.ice import EarlyProjection
from ice_exp.world import OracleLandmarker, OracleParser

# mouth_shape with pixels, small enough for the loop: 40 + 96 landmark rows, 3·12² = 432 pixel rows, D = 192
MOUTH = {"_target_": "ice_exp.criteria.LandmarkGroup", "_partial_": True, "group": "mouth", "centred": True}
CRITERIA = {
    "name": "mouth_shape",
    "activate": {"criterion": MOUTH, "part": "group"},
    "suppress": {
        "other_landmarks": {"criterion": MOUTH, "part": "others", "ratio": 1e-2},
        "outside_mouth": {"criterion": {"_target_": "ice_exp.criteria.MaskedPixels", "_partial_": True, "regions": ["mouth_all"],
                                        "morphology": "dilate", "ks_ratio": 0.1, "size": 12}, "part": "outside", "ratio": 1e-3},
    },
}


@pytest.fixture(scope="module")
def world():
    """toyface in float64 at 32 px, its mouth_shape terms, and three sample latents in S."""
    generator = ToyFaceGenerator(resolution=32, dtype=torch.float64)
    terms = build_terms(CRITERIA, Analyzers(parser=OracleParser(), landmarker=OracleLandmarker()))
    z = torch.randn(3, generator.z_dim, generator=torch.Generator().manual_seed(8))
    return generator, terms, z


def _u(generator, z):
    return generator.encode(z[None], "s")[0].detach()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("shape", [(40, 7), (5, 9)])  # more outputs than inputs (jvp wins) and fewer (vjp wins)
def test_every_mode_equals_the_loop_on_a_float64_function(shape):
    m, d = shape
    a = torch.randn(m, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fn = lambda u: torch.tanh(a @ u) * (a @ u.sin())  # noqa: E731
    u = torch.randn(d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    reference = jacobian(fn, u, "loop")
    for mode in ("vjp", "jvp", "auto"):
        for chunk in (None, 1, 3):
            assert _rel(jacobian(fn, u, mode, chunk), reference) <= 1e-12, (mode, chunk)


def test_linear_function_has_its_matrix_as_jacobian():
    a = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    u = torch.randn(4, dtype=torch.float64)
    for mode in ("loop", "vjp", "jvp", "auto"):
        assert torch.allclose(jacobian(lambda v: a @ v + 1, u, mode), a, rtol=0, atol=1e-15)
    assert torch.allclose(gram(a), a.T @ a)


def test_engines_equal_the_loop_on_toyface_float64(world):
    generator, terms, z = world
    u = _u(generator, z[0])
    reference = sample_grams(generator, terms, u, "s", mode="loop")
    for mode in ("vjp", "jvp", "auto"):
        grams = sample_grams(generator, terms, u, "s", mode=mode)
        for name, g in reference.items():
            assert _rel(grams[name], g) <= 1e-6, (mode, name, _rel(grams[name], g))


@pytest.mark.parametrize("mode", ["loop", "vjp", "jvp", "auto"])
def test_one_rendering_for_all_criteria_gives_the_per_criterion_results(world, mode):
    """Every criterion reading one shared frame (and its tangent) gives the Grams and directional changes
    of each criterion rendering alone, in every mode, to float64 round-off."""
    generator, terms, z = world
    u = _u(generator, z[1])
    reference = per_criterion.sample_grams(generator, terms, u, "s", mode=mode)
    tangents = torch.randn(5, u.numel(), dtype=u.dtype, generator=torch.Generator().manual_seed(5))
    moved = per_criterion.directional_changes(generator, terms, u, "s", tangents.T)
    passes = {}
    grams = sample_grams(generator, terms, u, "s", mode=mode, passes=passes)
    assert list(passes) == ["exact"] and passes["exact"] == (20 if mode in ("jvp", "auto") else 40 + 96 + 432)  # jvp: toyface's 20 factors
    changes = directional_changes(generator, terms, u, "s", tangents.T)
    for name, g in reference.items():
        assert _rel(grams[name], g) <= 1e-10, (mode, name)
        assert _rel(changes[name], moved[name]) <= 1e-10, name


def test_chunks_halve_on_out_of_memory_and_give_the_same_rows():
    data = torch.arange(10.0)[:, None]
    calls = []

    def apply(i, j):
        calls.append(j - i)
        if j - i > 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return data[i:j] * 2

    assert torch.equal(in_chunks(apply, 10, torch.device("cpu"), chunk=8), data * 2)
    assert calls[:3] == [8, 4, 2]  # halved until it fits, then kept
    with pytest.raises(RuntimeError, match="other"):
        in_chunks(lambda i, j: (_ for _ in ()).throw(RuntimeError("other")), 3, torch.device("cpu"), chunk=2)


def test_precision_scope_restores_flags_and_the_check_measures_error():
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with precision_scope("tf32", torch.device("cpu")):
        assert matmul.fp32_precision == "tf32"
    assert matmul.fp32_precision == before
    a = torch.randn(30, 8, generator=torch.Generator().manual_seed(3))
    fn = lambda u: torch.tanh(a @ u)  # noqa: E731
    u = torch.randn(8, generator=torch.Generator().manual_seed(4))
    assert precision_error(fn, u, "tf32", 1e-3)["gram_rel_error"] == 0  # TF32 does not exist on CPU
    bf16 = precision_error(fn, u, "bf16", 1e-3)
    assert 0 < bf16["gram_rel_error"] < 0.1 and bf16["dim"] == bf16["dim_exact"]


def test_ice_result_does_not_depend_on_the_engine(world):
    generator, terms, z = world
    u = _u(generator, z[0])
    solutions = []
    for mode in ("vjp", "jvp", "auto"):
        grams = sample_grams(generator, terms, u, "s", mode=mode)
        problem = Problem(grams["activate"], [SuppressTerm(t.name, grams[t.name], t.ratio) for t in terms.suppress])
        solutions.append(EarlyProjection()(problem))
    for other in solutions[1:]:
        assert other.directions.shape == solutions[0].directions.shape
        assert torch.allclose(other.sigma, solutions[0].sigma, rtol=1e-8)
        assert principal_angles(other.directions, solutions[0].directions).max() < 1e-4


def test_resume_after_kill_gives_the_same_subspace(world, tmp_path, monkeypatch):
    """A run killed after two of three samples restarts from the cache: only the third is computed, and
    the accumulated matrices (hence the subspace) equal those of a run never interrupted."""
    generator, terms, z = world

    def accumulate(source, samples):
        acc = {t.name: GramMean(generator.space_dim("s")) for t in terms.terms}
        for sample in samples:
            for name, g in source(sample, _u(generator, sample)).items():
                acc[name].update(g)
        grams = {name: a.compute() for name, a in acc.items()}
        return EarlyProjection()(Problem(grams["activate"], [SuppressTerm(t.name, grams[t.name], t.ratio) for t in terms.suppress]))

    uninterrupted = accumulate(SampleGrams(generator, terms, "s"), z)
    first = SampleGrams(generator, terms, "s", cache_dir=tmp_path)
    for sample in z[:2]:  # the run dies after the second sample
        first(sample, _u(generator, sample))
    import ice_exp.engine.grams as grams_module

    computed = []
    real = grams_module.sample_grams
    monkeypatch.setattr(grams_module, "sample_grams", lambda *a, **k: computed.append(1) or real(*a, **k))
    resumed = accumulate(SampleGrams(generator, terms, "s", cache_dir=tmp_path), z)
    assert len(computed) == 1
    assert torch.equal(resumed.sigma, uninterrupted.sigma) and torch.equal(resumed.directions, uninterrupted.directions)
    other_weights = SampleGrams(ToyFaceGenerator(resolution=32, seed=1, dtype=torch.float64), terms, "s", cache_dir=tmp_path)
    assert other_weights.cache.dir != SampleGrams(generator, terms, "s", cache_dir=tmp_path).cache.dir
    other_size = SampleGrams(ToyFaceGenerator(resolution=40, dtype=torch.float64), terms, "s", cache_dir=tmp_path)
    assert other_size.cache.dir != first.cache.dir  # the same weights at another resolution: other Grams
    assert not list(tmp_path.rglob("*.tmp"))


def test_randomised_range_finder_keeps_the_null_space_within_a_degree():
    """A 3,072-row pixel term of toyface (float32, as runs use it): the sketch spends fewer passes than rows
    and its significant eigenspace at the term's ratio, and the resulting ICE subspace, are within 1°."""
    generator = ToyFaceGenerator(resolution=48)
    terms = build_terms({**CRITERIA, "suppress": {"outside_mouth": {**CRITERIA["suppress"]["outside_mouth"],
                        "criterion": {**CRITERIA["suppress"]["outside_mouth"]["criterion"], "size": 32}}}},
                        Analyzers(parser=OracleParser(), landmarker=OracleLandmarker()))
    u = _u(generator, torch.randn(generator.z_dim, generator=torch.Generator().manual_seed(8)))
    fn = term_fn(generator, terms, u, "s", "outside_mouth")
    exact = gram(jacobian(fn, u, "jvp"))
    sketch = range_sketch(fn, u, rank=16, ratio=1e-3)
    assert sketch.passes < 3072 and sketch.missed < 1e-3 * torch.linalg.eigvalsh(exact)[-1]
    angle, dim, dim_exact = eigenspace_angle(sketch.gram(), exact, 1e-3)
    assert dim == dim_exact and angle < 1.0
    grams, passes = sample_grams(generator, terms, u, "s"), {}
    approx = sample_grams(generator, terms, u, "s", suppress_rank=8, passes=passes)
    assert "outside_mouth" in passes  # 8 + 10 oversampled passes: fewer than the exact route's 20 (the factors)
    solve = lambda g: EarlyProjection()(Problem(g["activate"], [SuppressTerm("outside_mouth", g["outside_mouth"], 1e-3)]))  # noqa: E731
    assert principal_angles(solve(approx).directions, solve(grams).directions).max() < 1.0


def test_a_sketch_no_cheaper_than_the_exact_passes_at_the_code_is_not_taken():
    """The exact route runs at toyface's 20 factors (Generator.code), not its 192 style coordinates: a
    suppress sketch of rank 16 (+ 10 oversampled) would cost more passes than that, so the term stays exact."""
    generator = ToyFaceGenerator(resolution=32, dtype=torch.float64)
    terms = build_terms(CRITERIA, Analyzers(parser=OracleParser(), landmarker=OracleLandmarker()))
    u = _u(generator, torch.randn(generator.z_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    passes = {}
    kept = sample_grams(generator, terms, u, "s", suppress_rank=16, passes=passes)
    assert passes == {EXACT: generator.code(u[None], "s").shape[1]} == {EXACT: 20}
    exact = sample_grams(generator, terms, u, "s")
    assert all(torch.equal(kept[name], exact[name]) for name in exact)


def test_activate_topk_matches_the_exact_top_eigenspace(world):
    generator, terms, z = world
    u = _u(generator, z[0])
    fn = term_fn(generator, terms, u, "s", "activate")
    exact = gram(jacobian(fn, u, "vjp"))
    approx, passes = topk_gram(fn, u, k=3)
    top = lambda g: torch.linalg.eigh(g)[1][:, -3:]  # noqa: E731
    assert principal_angles(top(approx), top(exact)).max() < 0.1
    # 13 probes (k + oversample) pulled back, then only the term's rank-3 range goes on (the mouth's 3 factors):
    # two power iterations of JᵀJ (2 passes a column) and J Q
    assert torch.linalg.matrix_rank(approx) == 3 and passes == (3 + 10) + (2 * 2 + 1) * 3


def test_gpu_benchmark_runs_tiny_on_cpu(capsys):
    from experiments.benchmarks.gpu import main

    table = main(["--tiny", "--engines", "vjp", "randomised", "--rank", "200"])
    assert [r["engine"] for r in table] == ["vjp", "randomised"]
    errors = [v for k, v in table[1].items() if k.startswith("error_")]
    assert len(errors) == 3 and max(errors) < 0.01, table[1]  # two suppress eigenspaces and the subspace, vs vjp
    assert "face_boundary" in capsys.readouterr().out


def test_evaluation_from_the_cached_grams_equals_one_pass_per_probe(world, tmp_path, monkeypatch):
    """With the Gram cache on, the held-out faces' changes are quadratic forms of their cached Grams: the
    scores of one forward pass per probe to round-off, and a second run computes nothing."""
    generator, terms, z = world
    directions = torch.linalg.qr(torch.randn(192, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6)))[0]
    solution = Solution(sigma=torch.ones(3), directions=directions)
    direct = evaluate(generator, terms, "s", solution, z)
    cached = evaluate(generator, terms, "s", solution, z, grams=SampleGrams(generator, terms, "s", cache_dir=tmp_path))
    import ice_exp.engine.grams as grams_module
    import ice_exp.run.evaluation as evaluation_module

    monkeypatch.setattr(grams_module, "sample_grams", lambda *a, **k: pytest.fail("computed again"))
    monkeypatch.setattr(evaluation_module, "directional_changes", lambda *a, **k: pytest.fail("probed"))
    again = evaluate(generator, terms, "s", solution, z, grams=SampleGrams(generator, terms, "s", cache_dir=tmp_path))
    assert again == cached and direct.keys() == cached.keys()
    for key, value in direct.items():
        assert value == pytest.approx(cached[key], rel=1e-9, abs=1e-12), key

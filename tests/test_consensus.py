"""The consensus solver: the local views it accumulates, its majority rule on known answers, and a whole run
in a linear and a curved toyface world drawn at random."""
from __future__ import annotations

import pytest
import torch

from ice_exp.analyzers import Analyzers
from ice_exp.common.linalg import orthonormal, principal_angles
from ice_exp.criteria.terms import build_terms
from ice_exp.engine.accumulate import accumulate
from ice_exp.engine.grams import SampleGrams
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.run.discovery import run
from ice_exp.solvers.base import VIEW, Problem, SuppressTerm, views_of
from ice_exp.solvers.consensus import Consensus
from ice_exp.solvers.ice import EarlyProjection
from ice_exp.world import OracleLandmarker, OracleParser
from tests.conftest import make_config
from tests.test_engine import CRITERIA

WORLD = int(torch.randint(1000, 10**6, (1,), generator=torch.Generator().manual_seed(11)))  # drawn, not picked


def line(*xs: float) -> torch.Tensor:
    v = torch.tensor(xs, dtype=torch.float64)[:, None]
    return v / v.norm()


def test_the_majority_keeps_what_most_local_solutions_share():
    """Three local solutions share e0 (one tilted by 20°), two of three share e1, one holds e2: the mean
    projector's eigenvalues are about 0.96, 0.67, 0.33, so e0 and e1 stay and e2 goes."""
    tilted = line(1, 0.364, 0, 0)  # tan 20°
    local = [torch.cat([line(1, 0, 0, 0), line(0, 1, 0, 0)], 1), torch.cat([line(1, 0, 0, 0), line(0, 0, 1, 0)], 1),
             torch.cat([tilted, line(-0.364, 1, 0, 0)], 1)]
    mean = sum(q @ q.T for q in local) / 3
    solver = Consensus()
    problem = Problem(activate=torch.diag(torch.tensor([1.0, 2.0, 3.0, 0.0], dtype=torch.float64)),
                      views={solver.view_key: mean})
    found = solver(problem)
    assert found.directions.shape[1] == 2 and float(principal_angles(found.directions, torch.eye(4)[:, :2]).max()) < 25
    assert torch.equal(found.sigma, found.sigma.sort(descending=True).values)  # ranked by activate gain


def test_where_the_faces_agree_the_summed_solution_is_returned_exactly():
    """The summed ICE problem returns e0, e1; the local solutions (tilted by a few degrees) agree on two
    directions: the answer is the summed one, untilted."""
    local = [torch.cat([line(1, 0.05, 0, 0.05), line(-0.05, 1, 0.05, 0)], 1), torch.eye(4, dtype=torch.float64)[:, :2]]
    solver = Consensus()
    problem = Problem(activate=torch.diag(torch.tensor([1.0, 2.0, 0.0, 0.0], dtype=torch.float64)),
                      views={solver.view_key: sum(orthonormal(q) @ orthonormal(q).T for q in local) / 2})
    found = solver(problem)
    assert found.directions.shape[1] == 2 and float(principal_angles(found.directions, torch.eye(4)[:, :2]).max()) < 1e-6


def test_without_its_views_it_says_what_it_needs():
    with pytest.raises(ValueError, match="local views"):
        Consensus()(Problem(activate=torch.eye(3, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"solver.vote: must be a finite number in \(0, 1\)"):
        Consensus(vote=1.0)


def test_the_accumulated_view_is_the_mean_of_the_per_sample_projectors():
    generator = ToyFaceGenerator(resolution=32, seed=WORLD)
    terms = build_terms(CRITERIA, Analyzers(parser=OracleParser(), landmarker=OracleLandmarker()))
    grams = SampleGrams(generator, terms, "s")
    z = torch.randn(3, generator.z_dim, generator=torch.Generator().manual_seed(0))
    solver = Consensus()
    views = views_of([solver, EarlyProjection()], terms, generator, "s")
    assert list(views) == [VIEW + solver.view_key]  # plain ICE needs no view
    total = accumulate(grams, z, views=views)
    per_sample = []
    for zi in z:
        sample = grams(zi, generator.encode(zi[None], "s")[0])
        per_sample.append(solver.local_view(Problem(sample[terms.activate.name],
                                                    [SuppressTerm(t.name, sample[t.name], t.ratio) for t in terms.suppress])))
    assert torch.allclose(total[VIEW + solver.view_key], sum(per_sample) / 3, atol=1e-9)
    assert Problem.of(total, terms).views.keys() == {solver.view_key}


@pytest.mark.parametrize("curvature", [0.0, 0.3])
def test_a_consensus_run_finds_the_true_dimension_where_summed_ice_does_not(curvature, tmp_path):
    """mouth_shape with 8 faces: the consensus meets its world's bar in a linear and a curved world; in the
    curved one summed ICE (the recommended settings) returns several local truths per face instead."""
    overrides = ["experiment=toyface/mouth_shape", "generator.resolution=48", f"generator.seed={WORLD}",
                 f"generator.curvature={curvature}", "samples.indices=[0,1,2,3,4,5,6,7]", "samples.eval_num=3"]
    consensus = run(make_config(*overrides, "solver=ice_consensus"), tmp_path / "consensus")
    assert consensus["gt/dim_found"] == consensus["gt/dim_true"] == 3 and consensus["gt/pass"] == 1, consensus
    assert 0.5 < consensus["trust/agreement"] <= 1
    if curvature:
        summed = run(make_config(*overrides), tmp_path / "summed")
        assert summed["gt/dim_found"] > summed["gt/dim_true"] and summed["gt/pass"] == 0, summed

"""Cross-check analyzers: a term read by two analyzers gets AᵀA − (1 + margin) HᵀH (engine.jacobian.gram),
in which an error only one of them makes does not count as a change. Checked against identities of known
analyzer errors (tests.test_noise_floor's brightness-following landmarks), not against the code's own output."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from ice_exp.analyzers import Analyzers
from ice_exp.criteria.terms import Terms, build_terms
from ice_exp.engine.grams import directional_changes, sample_grams
from ice_exp.run.build import build_setup
from ice_exp.solvers.base import Problem, SuppressTerm
from ice_exp.solvers.peers import ReSeFa
from ice_exp.world import OracleLandmarker, OracleParser
from tests.conftest import TINY, make_config
from tests.test_noise_floor import BrightnessLandmarker

GAIN = 1.0


@pytest.fixture(scope="module")
def setup():
    return build_setup(make_config("experiment=toyface/mouth_shape", *TINY, "generator.seed=3"))


def terms_with(setup, first, second=None, margin=0.0) -> Terms:
    criteria = OmegaConf.to_container(make_config("experiment=toyface/mouth_shape", *TINY, "generator.seed=3").criteria, resolve=True)
    crosscheck = None if second is None else Analyzers(landmarker=second)
    return build_terms(criteria, Analyzers(parser=OracleParser(), landmarker=first), crosscheck, margin)


def grams(setup, terms: Terms) -> dict[str, torch.Tensor]:
    u = setup.generator.encode(setup.z_train[:1], setup.space)[0]
    return sample_grams(setup.generator, terms, u, setup.space)


def test_the_same_analyzer_twice_changes_nothing(setup):
    plain = grams(setup, terms_with(setup, OracleLandmarker()))
    for margin in (0.0, 2.0):
        checked = grams(setup, terms_with(setup, OracleLandmarker(), OracleLandmarker(), margin))
        assert all(torch.allclose(checked[name], plain[name], rtol=0, atol=1e-9 * plain[name].abs().max()) for name in plain)


def test_opposite_errors_cancel_and_their_size_is_subtracted(setup):
    """Readings J* + E and J* − E: their mean is exact and their disagreement is E, so the term's Gram is
    J*ᵀJ* − (1 + margin) EᵀE, with EᵀE = (G₊ + G₋)/2 − J*ᵀJ* from the two single readings."""
    exact = grams(setup, terms_with(setup, OracleLandmarker()))
    plus = grams(setup, terms_with(setup, BrightnessLandmarker(GAIN)))
    minus = grams(setup, terms_with(setup, BrightnessLandmarker(-GAIN)))
    for margin in (0.0, 1.0):
        checked = grams(setup, terms_with(setup, BrightnessLandmarker(GAIN), BrightnessLandmarker(-GAIN), margin))
        for name in ("activate", "other_landmarks"):
            error = (plus[name] + minus[name]) / 2 - exact[name]
            assert error.abs().max() > 1e-6 * exact[name].abs().max()  # the analyzers do err
            expected = exact[name] - (1 + margin) * error
            assert torch.allclose(checked[name], expected, rtol=0, atol=1e-6 * exact[name].abs().max())


class SidewaysLandmarker(BrightnessLandmarker):
    """The oracle's points moved up and down (y) by the brightness instead of sideways (x)."""

    def forward(self, frame):
        points = super().forward(frame)
        exact = OracleLandmarker.forward(self, frame)
        return exact + (points - exact).flip(-1)


def test_errors_in_different_outputs_do_not_block_the_truth(setup):
    """One analyzer errs in x, the other in y: on directions that leave the exact term still (the mouth
    factors for the other landmarks), the single reading moves, the cross-checked one does not."""
    gain = 30.0  # the mouth barely changes the mean brightness of a 32 px face: a large error, to see it
    q = setup.generator.true_subspace(setup.truth, setup.space).double()
    single = grams(setup, terms_with(setup, BrightnessLandmarker(gain)))["other_landmarks"]
    checked = grams(setup, terms_with(setup, BrightnessLandmarker(gain), SidewaysLandmarker(gain)))["other_landmarks"]
    scale = torch.linalg.eigvalsh(single)[-1]
    blocked, left = torch.linalg.eigvalsh(q.T @ single @ q)[-1], torch.linalg.eigvalsh(q.T @ checked @ q).abs().max()
    assert blocked > 1e-5 * scale and left < 1e-4 * blocked


def test_directional_changes_read_the_same_form(setup):
    terms = terms_with(setup, BrightnessLandmarker(GAIN), SidewaysLandmarker(GAIN), margin=1.0)
    u = setup.generator.encode(setup.z_train[:1], setup.space)[0]
    v = torch.randn(u.numel(), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    changes = directional_changes(setup.generator, terms, u, setup.space, v)
    for name, g in sample_grams(setup.generator, terms, u, setup.space).items():
        expected = torch.einsum("dk,de,ek->k", v, g, v)
        assert torch.allclose(changes[name], expected, rtol=1e-4, atol=1e-6 * g.abs().max())


def test_a_config_adds_the_twins_and_bad_settings_are_refused(setup):
    cfg = make_config("experiment=toyface/mouth_shape", *TINY, "analyzer/landmarker@crosscheck.landmarker=oracle")
    built = build_setup(cfg)
    twinned = {t.name for t in built.terms.terms if t.twin}
    assert twinned == {"activate", "other_landmarks"}  # the pixel term reads the parser, which is not cross-checked
    assert built.terms.margin == cfg.crosscheck.margin
    with pytest.raises(ValueError, match="crosscheck.margin"):
        build_setup(make_config("experiment=toyface/mouth_shape", *TINY, "analyzer/landmarker@crosscheck.landmarker=oracle",
                                "crosscheck.margin=-1"))
    u = built.generator.encode(built.z_train[:1], built.space)[0]
    with pytest.raises(ValueError, match="cross-check analyzers"):
        sample_grams(built.generator, built.terms, u, built.space, suppress_rank=2, oversample=2)


def test_the_peers_read_an_indefinite_gram_by_its_positive_part():
    """A cross-Gram may have negative eigenvalues; ReSeFa's background takes each term's PSD part, so its
    Cholesky stands and a direction the term reads as negative is as free as one it does not move."""
    act = torch.diag(torch.tensor([1.0, 1.0, 0.1], dtype=torch.float64))
    sup = torch.diag(torch.tensor([-0.5, 0.0, 1.0], dtype=torch.float64))
    problem = Problem(act, [SuppressTerm("s", sup, 1e-3)])
    assert torch.allclose(problem.background(), torch.diag(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)))
    solution = ReSeFa(tau=1e-3, rho=0.5)(problem)
    assert solution.directions.shape[1] == 2 and solution.directions[2].abs().max() < 1e-9

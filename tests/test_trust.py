"""Trust scores without ground truth: the activate share of a direction's held-out change, read by the run's
own analyzers (trust/heldout_share) and by independent trust analyzers (trust/independent_share). Checked
against the toyface truth: the task's true subspace, other groups' truths and an analyzer error that only one
of two landmark models makes."""
from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from ice_exp.analyzers import Analyzers
from ice_exp.metrics.directional import activate_share
from ice_exp.run.build import build_setup, build_trust_terms
from ice_exp.run.discovery import run
from ice_exp.run.evaluation import evaluate, independent_trust, random_directions
from ice_exp.solvers.base import Solution
from tests.conftest import TINY, make_config
from tests.test_noise_floor import BrightnessLandmarker

MOUTH = ["mouth_width", "mouth_openness", "smile_curvature"]  # conf/task/mouth_shape.yaml's truth
OVERRIDES = ("experiment=toyface/mouth_shape", *TINY, "generator.seed=3", "samples.eval_num=4")


@pytest.fixture(scope="module")
def setup():
    return build_setup(make_config(*OVERRIDES))


def of(setup, factors: list[str]) -> Solution:
    v = setup.generator.true_subspace(factors, setup.space)
    return Solution(torch.ones(v.shape[1]), v)


def test_the_share_is_the_activate_part_of_the_relative_changes():
    share = activate_share(torch.tensor([3.0, 0.0, 1.0]), [torch.tensor([1.0, 2.0, 1.0]), torch.tensor([0.0, 2.0, 1.0])])
    assert torch.allclose(share, torch.tensor([0.75, 0.0, 1 / 3], dtype=torch.float64))


def test_the_held_out_share_separates_the_truth_from_other_groups_and_chance(setup):
    """The mouth's true subspace moves only the mouth (share ≈ 1), the eyes' and the skin tone's truths move
    only what the task suppresses (≈ 0), random directions fall in between."""
    random = Solution(torch.ones(4), random_directions(of(setup, MOUTH).directions.shape[0], 4, 7))
    share = {name: evaluate(setup.generator, setup.terms, setup.space, solution, setup.z_eval)["trust/heldout_share"]
             for name, solution in {"truth": of(setup, MOUTH), "eyes": of(setup, ["eye_size", "eye_openness"]),
                                    "skin": of(setup, ["skin_tone"]), "random": random}.items()}
    assert share["truth"] > 0.99
    assert share["eyes"] < 1e-3 and share["skin"] < 1e-3
    assert 1e-3 < share["random"] < 0.9


def test_an_error_only_the_discovery_analyzer_makes_does_not_pass_the_independent_check(setup):
    """Landmarks that follow the image's brightness make a skin-tone change look like a mouth change to the
    erring model; read by an exact landmark model (the trust analyzer) the same direction moves no mouth
    landmark, so its independent share falls to about 0 while the truth's stays at its own."""
    criteria = OmegaConf.to_container(make_config(*OVERRIDES).criteria, resolve=True)
    erring = build_trust_terms(criteria, setup.analyzers, Analyzers(landmarker=BrightnessLandmarker(10.0)))
    assert erring.criteria[erring.activate.criterion].landmarker.__class__ is BrightnessLandmarker
    skin = of(setup, ["skin_tone"])
    misled = evaluate(setup.generator, erring, setup.space, skin, setup.z_eval)
    checked = independent_trust(setup.generator, setup.terms, setup.space, skin, setup.z_eval)
    assert misled["eval/gain"] > 1.0  # the erring model sees the mouth move
    assert misled["trust/heldout_share"] > 1e3 * checked["trust/independent_share"]
    truth = of(setup, MOUTH)
    assert independent_trust(setup.generator, erring, setup.space, truth, setup.z_eval)["trust/independent_share"] == \
        pytest.approx(evaluate(setup.generator, setup.terms, setup.space, truth, setup.z_eval)["trust/heldout_share"], abs=1e-4)


def test_a_model_the_trust_config_lacks_is_the_runs_own():
    """trust.landmarker set, trust.parser not: the trust terms' landmarks are the trust model, their pixels the
    run's own parser; no trust config, no trust terms."""
    built = build_setup(make_config(*OVERRIDES, "analyzer/landmarker@trust.landmarker=oracle"))
    assert build_setup(make_config(*OVERRIDES)).trust_terms is None
    read = built.trust_terms.criteria.values()
    assert all(c.landmarker is not built.analyzers.landmarker for c in read if hasattr(c, "landmarker"))
    assert [c.parser for c in read if hasattr(c, "parser")] == [built.analyzers.parser]


def test_a_run_with_trust_analyzers_writes_both_shares(tmp_path):
    metrics = run(make_config(*TINY, "analyzer/landmarker@trust.landmarker=oracle", "analyzer/parser@trust.parser=oracle"), tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 <= saved["trust/heldout_share"] <= 1 and saved["trust/independent_share"] == metrics["trust/independent_share"]
    # the same exact analyzers read twice: the independent reading is the run's own
    assert saved["trust/independent_share"] == pytest.approx(saved["trust/heldout_share"], rel=1e-6)
    assert saved["trust/independent/gain"] == pytest.approx(saved["eval/gain"], rel=1e-6)
    assert saved["trust/independent_share_per_direction"] == pytest.approx(saved["trust/heldout_share_per_direction"], rel=1e-6)


def test_missing_trust_weights_stop_the_run_before_any_compute_naming_the_file(tmp_path):
    """A trust parser whose weights are not there fails at build, naming the file, with nothing written."""
    missing = tmp_path / "nowhere" / "parsing_bisenet.pth"
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run(make_config(*TINY, "analyzer/parser@trust.parser=bisenet", f"trust.parser.path={missing}"), out)
    assert not (out / "subspace.safetensors").exists() and not (out / "metrics.json").exists()

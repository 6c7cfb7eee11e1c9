"""Suppress terms' noise floors: zero for exact analyzers, the square of a known analyzer error, and the
ratios raised to them."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf

from ice_exp.analyzers import Analyzers
from ice_exp.criteria.terms import build_terms
from ice_exp.generators.base import Frame
from ice_exp.run.build import Setup, build_setup
from ice_exp.run.noise_floor import floored_ratios, noise_floors
from ice_exp.world import OracleLandmarker
from tests.conftest import TINY, make_config

GAIN = 1.0  # px per unit of mean brightness: a floor of 3e-4 here (the trained FAN: 2e-3–3e-2)


class BrightnessLandmarker(OracleLandmarker):
    """The oracle's points stretched sideways by ``gain`` × the image's mean brightness (point k moves by
    k/67 of it, so that no centring cancels it): a landmark model whose error follows a colour, as a trained
    FAN's does."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, frame: Frame) -> torch.Tensor:
        points = super().forward(frame)
        shift = self.gain * frame.image.mean(dim=(1, 2, 3))[:, None] * torch.linspace(0, 1, 68, dtype=points.dtype)
        return points + torch.stack([shift, torch.zeros_like(shift)], -1)


@pytest.fixture(scope="module")
def exact() -> Setup:
    return build_setup(make_config("experiment=toyface/mouth_shape", *TINY, "generator.seed=3"))


def with_landmarker(setup: Setup, landmarker: OracleLandmarker) -> Setup:
    cfg = make_config("experiment=toyface/mouth_shape", *TINY, "generator.seed=3")
    analyzers = Analyzers(parser=setup.analyzers.parser, landmarker=landmarker)
    return dataclasses.replace(setup, analyzers=analyzers,
                               terms=build_terms(OmegaConf.to_container(cfg.criteria, resolve=True), analyzers))


def test_exact_analyzers_have_no_floor(exact):
    floors = noise_floors(exact, exact, exact.z_train)
    assert set(floors) == {"other_landmarks", "outside_mouth"} and all(f == 0 for f in floors.values())


def test_the_floor_is_the_squared_error_of_a_known_analyzer(exact):
    """The brightness-following points add gain × ∇(mean brightness) to every x row: the error Gram is
    gain² times a fixed matrix, so doubling the gain quadruples the floor of the landmark term (its own
    Gram barely moves at these gains), and the pixel term, which reads no landmark, keeps a zero floor."""
    small = noise_floors(with_landmarker(exact, BrightnessLandmarker(GAIN)), exact, exact.z_train)
    large = noise_floors(with_landmarker(exact, BrightnessLandmarker(2 * GAIN)), exact, exact.z_train)
    assert small["other_landmarks"] > 0 and large["other_landmarks"] / small["other_landmarks"] == pytest.approx(4, rel=0.05)
    assert small["outside_mouth"] == 0 == large["outside_mouth"]


def test_ratios_rise_to_their_floors_and_an_all_error_term_is_left_out():
    assert floored_ratios({"a": 1e-4, "b": 1e-2, "c": 1e-4}, {"a": 3e-3, "b": 1e-3, "c": 1.2}) == {"a": 3e-3, "b": 1e-2, "c": None}


def test_setups_with_different_terms_are_refused(exact):
    other = build_setup(make_config("experiment=toyface/lip_color", *TINY, "generator.seed=3"))
    with pytest.raises(ValueError, match="same suppress terms"):
        noise_floors(exact, other, exact.z_train)
    with pytest.raises(ValueError, match="no validation faces"):
        noise_floors(exact, exact, exact.z_train[:0])

"""The seed's analyzer glue beside ours (docs/method.md, "The seed's analyzer glue"): FAN heatmap decoding
(``heatmap_mode``) and parser masks (``mask_mode``), each checked against a computation done by hand."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import jvp

from ice_exp.analyzers import Analyzers
from ice_exp.analyzers.fan import FANLandmarker
from ice_exp.analyzers.masks import work_mask
from ice_exp.analyzers.parsers import BiSeNetParser
from ice_exp.common.face_parts import REGIONS
from ice_exp.criteria.masked_pixels import MaskedPixels
from ice_exp.criteria.region_colour import RegionColour
from ice_exp.criteria.terms import build_terms
from ice_exp.engine.grams import SampleGrams
from ice_exp.generators.base import Frame
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.run.build import build_analyzers
from ice_exp.world import OracleParser
from tests.conftest import make_config
from tests.test_analyzers import Returns, gaussian_heatmaps

NET, R = 32, 48  # the parser network's input side and the image side: different, so that the order matters
HAIR, SKIN = REGIONS.index("hair"), REGIONS.index("skin")


def label_picture() -> Tensor:
    """[1, NET, NET] labels at the network side: skin, with a block of hair touching the top and left
    borders and a separate block of hair inside."""
    labels = torch.full((1, NET, NET), SKIN)
    labels[:, :10, :14] = HAIR
    labels[:, 18:27, 16:29] = HAIR
    return labels


class FixedLogits(nn.Module):
    """Stands in for the parser network: one-hot logits (plus a little noise) of a fixed label map."""

    def __init__(self, labels: Tensor) -> None:
        super().__init__()
        noise = 0.1 * torch.rand(labels.shape[0], 19, *labels.shape[1:], generator=torch.Generator().manual_seed(0))
        self.logits = 5.0 * F.one_hot(labels, 19).permute(0, 3, 1, 2).float() + noise

    def forward(self, x: Tensor) -> tuple[Tensor]:
        return (self.logits.expand(x.shape[0], -1, -1, -1),)


def parser_on(labels: Tensor, mask_mode: str) -> BiSeNetParser:
    parser = BiSeNetParser(size=NET, mask_mode=mask_mode)
    parser.net = FixedLogits(labels)
    return parser


def image(batch: int = 1, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.rand(batch, 3, R, R, generator=torch.Generator().manual_seed(1), dtype=dtype)


def seed_morphology_by_hand(mask: Tensor, op: str, k: int) -> Tensor:
    """kornia 0.6's dilation / erosion with border_type='constant' (border value 0), as the seed calls it:
    the window of pixel i spans [i - k // 2, i + k - 1 - k // 2], and outside the image is 0."""
    lo, hi = k // 2, k - 1 - k // 2
    padded = F.pad(mask, (lo, hi, lo, hi), value=0.0)
    windows = padded.unfold(2, k, 1).unfold(3, k, 1)  # [B, 1, r, r, k, k]
    dilated, eroded = windows.amax((-2, -1)), windows.amin((-2, -1))
    return {"dilate": dilated, "erode": eroded, "ring": dilated * (1 - eroded)}[op]


# -- FAN: heatmap decoding -------------------------------------------------------------------------------

def decode(heatmaps: Tensor, mode: str) -> Tensor:
    """The landmarker's points for these last-stack heatmaps (the network stands in), image side = map side."""
    landmarker = FANLandmarker(num_modules=1, size=32, heatmap_mode=mode)
    landmarker.net = Returns([heatmaps])
    return landmarker(Frame(image=torch.zeros(1, 3, heatmaps.shape[-1], heatmaps.shape[-1])))


def test_seed_decoding_moves_a_peak_over_a_negative_background_and_relu_does_not() -> None:
    """Peaks of height 1 over a background of -3e-3: the seed divides by a sum the background nearly
    cancels, so the point leaves the peak and moves G / (G + B) times faster than the peak does (G the
    peak's mass, B the background's); ReLU keeps the point on the peak and its rate at 1."""
    peaks = torch.tensor([[[20.3, 40.6], [45.2, 12.9]]], dtype=torch.float64)
    background = -3e-3
    maps = lambda p: gaussian_heatmaps(p, 64) + background  # noqa: E731
    ours, seed = decode(maps(peaks), "relu"), decode(maps(peaks), "seed")
    assert (ours - peaks).abs().max() < 0.01
    grid = torch.arange(64, dtype=torch.float64)
    h = maps(peaks)
    by_hand = torch.stack([(h.sum(-2) * grid).sum(-1), (h.sum(-1) * grid).sum(-1)], -1) / h.sum((-2, -1))[..., None]
    assert torch.allclose(seed, by_hand) and (seed - peaks).abs().max() > 5
    step = torch.tensor([0.05, 0.0], dtype=torch.float64)
    rate = lambda mode: (decode(maps(peaks + step), mode) - decode(maps(peaks - step), mode))[..., 0] / 0.1  # noqa: E731
    mass = gaussian_heatmaps(peaks, 64).sum((-2, -1))
    amplification = mass / (mass + background * 64 * 64)
    assert torch.allclose(rate("relu"), torch.ones(1, 2, dtype=torch.float64), atol=1e-2)
    assert torch.allclose(rate("seed"), amplification, rtol=1e-3) and amplification.min() > 5


def test_local_decoding_ignores_a_positive_background_that_pulls_and_moves_relus_point() -> None:
    """Peaks over a positive background b (the trained toyface FAN's maps keep one): ReLU's expectation is
    pulled towards the map's centre and moves when only b changes (a photometric change far from the point
    would move the landmark); ``local`` reads the map near its peak only, so neither happens."""
    peaks = torch.tensor([[[12.3, 40.6], [45.2, 52.9]]], dtype=torch.float64)
    maps = lambda b: gaussian_heatmaps(peaks, 64, sigma=1.0) + b  # noqa: E731  (sigma of the FAN authors' targets)
    relu, local = decode(maps(3e-3), "relu"), decode(maps(3e-3), "local")
    centre = torch.full_like(peaks, 31.5)
    assert ((relu - peaks) * (centre - peaks)).sum(-1).min() > 0 and (relu - peaks).norm(dim=-1).min() > 1  # pulled inwards
    assert (local - peaks).abs().max() < 0.2  # the window cuts the Gaussian off-centre: a sub-pixel bias only
    assert (decode(maps(4e-3), "relu") - relu).norm(dim=-1).min() > 0.1  # the background alone moves relu's point
    assert (decode(maps(4e-3), "local") - local).norm(dim=-1).max() < 0.01  # only the background inside the window
    step = torch.tensor([0.05, 0.0], dtype=torch.float64)
    shifted = lambda d: gaussian_heatmaps(peaks + d, 64, sigma=1.0) + 3e-3  # noqa: E731
    rate = (decode(shifted(step), "local") - decode(shifted(-step), "local"))[..., 0] / 0.1
    assert torch.allclose(rate, torch.ones(1, 2, dtype=torch.float64), atol=0.05)  # follows the peak at rate ~1


class SmoothHeatmaps(nn.Module):
    """Stands in for FAN: two Gaussian peaks over a -3e-3 background, modulated smoothly by the image."""

    def forward(self, x: Tensor) -> list[Tensor]:
        peaks = torch.tensor([[[5.3, 9.6], [11.2, 4.1]]], dtype=x.dtype)
        base = gaussian_heatmaps(peaks, 16).to(x.dtype) - 3e-3
        gain = 1 + 0.5 * F.adaptive_avg_pool2d(x, 16).mean(1, keepdim=True)
        return [base * gain]


@pytest.mark.parametrize("mode", ["relu", "seed", "local"])
def test_every_decoding_matches_finite_differences(mode: str) -> None:
    landmarker = FANLandmarker(num_modules=1, size=32, heatmap_mode=mode)
    landmarker.net = SmoothHeatmaps()
    f = lambda x: landmarker(Frame(image=x))  # noqa: E731
    x, v = image(dtype=torch.float64), torch.randn(1, 3, R, R, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, tangent = jvp(f, (x,), (v,))
    eps = 1e-6
    assert torch.allclose(tangent, (f(x + eps * v) - f(x - eps * v)) / (2 * eps), rtol=1e-5, atol=1e-7)
    assert tangent.abs().max() > 1e-3


def test_heatmap_mode_is_checked_at_construction() -> None:
    with pytest.raises(ValueError, match=r"analyzer\.landmarker\.heatmap_mode: unknown 'raw'; allowed values: relu, seed, local"):
        FANLandmarker(num_modules=1, size=32, heatmap_mode="raw")
    with pytest.raises(ValueError, match=r"analyzer\.landmarker\.local_radius: 0 must be >= 1 heatmap px"):
        FANLandmarker(num_modules=1, size=32, heatmap_mode="local", local_radius=0)


# -- parser masks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("op, ks_ratio", [("erode", 0.1), ("dilate", 0.125), ("ring", 0.1)])
def test_seed_mask_is_argmax_and_morphology_at_the_network_side(op: str, ks_ratio: float) -> None:
    """The seed's mask: argmax at the network side, kornia morphology there with int(ks_ratio * side)
    (3, or an even 4), then the integer mask resized to the image and rounded."""
    labels = label_picture()
    mask = (labels == HAIR).float()[:, None]
    k = int(ks_ratio * NET)
    expected = F.interpolate(seed_morphology_by_hand(mask, op, k), size=(R, R), mode="bilinear", align_corners=False).round()
    found = parser_on(labels, "seed").region_mask(Frame(image=image()), ["hair"], op, ks_ratio)
    assert torch.equal(found, expected)


def test_seed_erosion_eats_in_from_the_border_and_ours_does_not() -> None:
    """The hair block touching the top and left borders, eroded: ours keeps its border rows and columns,
    the seed's loses them as it loses the block's inner edges (the issue's eye_shape mask: ours +4.7%)."""
    labels, frame = label_picture(), Frame(image=image())
    ours = parser_on(labels, "image").region_mask(frame, ["hair"], "erode", 0.1)
    seed = parser_on(labels, "seed").region_mask(frame, ["hair"], "erode", 0.1)
    assert ours[0, 0, 0, :10].all() and ours[0, 0, :10, 0].all()
    assert not seed[0, 0, :2].any() and not seed[0, 0, :, :2].any()
    assert seed[0, 0, 2, 2:10].all() and seed.sum() < ours.sum()


def test_oracle_refuses_the_seed_masks_and_typos_name_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"analyzer\.parser\.mask_mode: 'seed' is not available for OracleParser "
                                         r"\(it makes and morphs masks at a parser network's input side\); "
                                         r"allowed values: image"):
        OracleParser(mask_mode="seed")
    with pytest.raises(ValueError, match=r"analyzer\.parser\.mask_mode: 'network' .* allowed values: image, seed"):
        BiSeNetParser(size=NET, mask_mode="network")


def test_masked_pixels_seed_resizes_then_crops_without_stretching() -> None:
    """inside = resize(x)·m cropped to m's box, outside = resize(x)·(1 - m) cropped to its own box, where m
    is the image-size mask resized to the work size and kept wherever the region reaches (> 0)."""
    size, frame = 16, Frame(image=image(2))
    parser = parser_on(label_picture(), "seed")
    criterion = MaskedPixels(parser, ["hair"], "dilate", 0.1, size=size)
    state = criterion.prepare(frame)
    out = criterion(frame, state)
    mask = parser.region_mask(frame, ["hair"], "dilate", 0.1)
    small = (F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False) > 0).float()
    x = F.interpolate(frame.image, size=(size, size), mode="bilinear", align_corners=False)
    for part, m in (("inside", small), ("outside", 1 - small)):
        rows, cols = torch.nonzero(m.amax((0, 1)).amax(1)).flatten(), torch.nonzero(m.amax((0, 1)).amax(0)).flatten()
        expected = (x * m)[..., rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
        assert torch.equal(out[part], expected.flatten(1))
    assert out["inside"].shape[1] < 3 * size * size  # the box is not stretched to size x size
    ours = MaskedPixels(parser_on(label_picture(), "image"), ["hair"], "dilate", 0.1, size=size)
    assert ours(frame, ours.prepare(frame))["inside"].shape[1] == 3 * size * size


def test_region_colour_seed_fits_the_colour_at_the_work_size() -> None:
    size, frame = 16, Frame(image=image())
    parser = parser_on(label_picture(), "seed")
    criterion = RegionColour(parser, ["hair"], size=size)
    out = criterion(frame, criterion.prepare(frame))
    mask = parser.region_mask(frame, ["hair"])
    small = (F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False) > 0).float()
    x = F.interpolate(frame.image, size=(size, size), mode="bilinear", align_corners=False)
    mean = (x * small).sum((2, 3)) / small.sum((2, 3))
    assert torch.allclose(out["mean"], mean) and torch.allclose(out["residual"], (x - mean[..., None, None] * small).flatten(1))
    with pytest.raises(ValueError, match="soft: true is the project's own mask"):
        RegionColour(parser, ["hair"], size=size, soft=True)


def test_work_mask_keeps_a_thin_line_only_under_the_seed() -> None:
    """Brought to a quarter of its side, a 1-px line is mostly outside every work pixel: ours drops it,
    the seed (a boolean resize: any overlap) keeps it."""
    mask = torch.zeros(1, 1, R, R)
    mask[..., 21, 8:40] = 1
    assert work_mask(mask, R // 4, "image").sum() == 0
    assert work_mask(mask, R // 4, "seed").sum() > 0


MASK_CRITERIA = {
    "masked_pixels": lambda parser: MaskedPixels(parser, ["hair"], "dilate", 0.1, size=16),
    "region_colour": lambda parser: RegionColour(parser, ["hair"], size=16),
}


@pytest.mark.parametrize("mode", ["image", "seed"])
@pytest.mark.parametrize("name", MASK_CRITERIA)
def test_mask_criteria_match_finite_differences(name: str, mode: str) -> None:
    """With the mask fixed (a constant inside the Jacobian) both criteria are smooth functions of the image."""
    frame = Frame(image=image(dtype=torch.float64))
    criterion = MASK_CRITERIA[name](parser_on(label_picture(), mode))
    state = criterion.prepare(frame)
    f = lambda x: torch.cat(list(criterion(Frame(image=x), state).values()), 1)  # noqa: E731
    v = torch.randn(1, 3, R, R, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _, tangent = jvp(f, (frame.image,), (v,))
    numeric = (f(frame.image + 1e-6 * v) - f(frame.image - 1e-6 * v)) / 2e-6
    assert torch.allclose(tangent, numeric, rtol=1e-6, atol=1e-8) and tangent.abs().max() > 1e-3


# -- configs and cache -----------------------------------------------------------------------------------

def test_one_override_per_analyzer_selects_the_seed_glue() -> None:
    cfg = make_config("analyzer/parser=bisenet_random", "analyzer/landmarker=fan_random",
                      "analyzer.parser.mask_mode=seed", "analyzer.landmarker.heatmap_mode=seed")
    analyzers = build_analyzers(cfg.analyzer)
    assert analyzers.parser.mask_mode == "seed" and analyzers.landmarker.heatmap_mode == "seed"
    defaults = build_analyzers(make_config("analyzer/parser=bisenet_random", "analyzer/landmarker=fan_random").analyzer)
    assert defaults.parser.mask_mode == "image" and defaults.landmarker.heatmap_mode == "relu"
    with pytest.raises(ValueError, match="analyzer.parser.mask_mode: .seed. is not available for OracleParser"):
        build_analyzers(make_config("analyzer.parser.mask_mode=seed").analyzer)


def test_a_mode_change_never_reads_the_other_modes_cached_grams(tmp_path) -> None:
    generator = ToyFaceGenerator(resolution=32)
    landmarks = {"_target_": "ice_exp.criteria.LandmarkGroup", "_partial_": True, "group": "eyes"}
    criteria = {"name": "eyes", "activate": {"criterion": landmarks, "part": "group"}}
    dirs = {SampleGrams(generator, build_terms(criteria, Analyzers(landmarker=FANLandmarker(1, 32, mode))), "s",
                        cache_dir=tmp_path).cache.dir for mode in ("relu", "seed")}
    assert len(dirs) == 2


def test_glue_measurement_runs_on_random_weights(tmp_path, monkeypatch) -> None:
    """experiments/trained_analyzers/glue.py end to end at a tiny size (the numbers mean nothing here); a rerun
    reads the rows already written instead of measuring again."""
    from experiments.trained_analyzers import glue

    argv = ["--tasks", "eye_shape", "--worlds", "3-3", "--out", str(tmp_path / "glue"),
            "--analyzers", "analyzer/parser=bisenet_random analyzer/landmarker=fan_random",
            "--overrides", "generator.resolution=32 analyzer.parser.size=32 criteria.suppress.face_pixels.criterion.size=16 space=w"]
    (result,) = glue.main(argv)
    assert (result["task"], result["world"]) == ("eye_shape", 3)
    assert 0 < result["heatmaps"]["negative_pixels"] < 1
    assert set(result["terms"]) == {"activate", "other_landmarks"}  # the terms that read the landmarker
    assert result["terms"]["activate"]["lambda_max_ratio"] > 0 and "significant_angle_deg" in result["terms"]["other_landmarks"]
    (mask,) = result["masks"].values()
    assert 0 < mask["iou"] <= 1 and 0 < mask["area_seed"] < 1
    assert all(0 <= a <= 90 for a in result["subspace_angle_deg"].values())
    assert set(result["directions"]) == {"ours", "fan_seed", "seed"}
    assert "| eye_shape |" in (tmp_path / "glue.md").read_text()

    monkeypatch.setattr(glue, "measure", lambda overrides: pytest.fail("measured a row that was already written"))
    assert glue.main(argv) == [result]

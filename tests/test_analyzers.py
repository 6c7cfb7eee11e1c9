"""The real analyzers (BiSeNet, ParseNet, FAN, ArcFace) on CPU with random weights: shapes, label mapping,
differentiability, the soft-argmax and the weight-file contract. No file is ever downloaded."""
from __future__ import annotations

import functools
import hashlib
import inspect
from pathlib import Path

import hydra
import hydra.errors
import pytest
import torch
from face_alignment.models import FAN
from facexlib.parsing import BiSeNet
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

from ice_exp.analyzers import weights
from ice_exp.analyzers.arcface import ArcFaceIdentity, IResNet, arcface
from ice_exp.analyzers.fan import FANLandmarker, fan, soft_argmax
from ice_exp.analyzers.parsers import PARSENET_CLASSES, BiSeNetParser, ParseNetParser, bisenet, parsenet
from ice_exp.checkpoints import CheckpointError
from ice_exp.common.face_parts import REGIONS
from ice_exp.generators.base import Frame

R = 48  # frame side used throughout: small, so that every network runs in well under a second

# Random-weight analyzers at small input sizes (the real ones use 512 / 256 / 112).
SMALL_MAKERS = {
    "bisenet": lambda: BiSeNetParser(size=64),
    "parsenet": lambda: ParseNetParser(size=32),
    "fan": lambda: FANLandmarker(num_modules=1, size=64),
    "arcface": lambda: ArcFaceIdentity(depth=18),
}


@functools.cache
def small(name: str) -> nn.Module:
    """Built once per session: the models are frozen, and initialising them is most of their CPU cost."""
    torch.manual_seed(0)
    return SMALL_MAKERS[name]()


def scalar_of(name: str, model: nn.Module, frame: Frame) -> Tensor:
    """A scalar summary of each analyzer's differentiable output."""
    if name in ("bisenet", "parsenet"):
        return model.region_mask(frame, ["hair", "skin"], soft=True).mean()
    return model(frame)[:, :3].sum()


def tiny_generator(u: Tensor) -> Frame:
    """A fixed linear latent -> image map: enough to check that gradients reach a latent."""
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, 3, R, R, generator=g)
    basis = torch.randn(u.shape[1], 3 * R * R, generator=g) * 0.1
    return Frame(image=base + (u @ basis).view(-1, 3, R, R))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", SMALL_MAKERS)
def test_output_shapes(name: str) -> None:
    model = small(name)
    out = model(Frame(image=torch.rand(2, 3, R, R)))
    if name in ("bisenet", "parsenet"):
        assert out.shape == (2, 19, R, R)
        assert torch.allclose(out.sum(1), torch.ones(2, R, R), atol=1e-5)
    elif name == "fan":
        assert out.shape == (2, 68, 2)
        assert out.min() >= -0.5 and out.max() <= R - 0.5  # inside the image, pixel centres at integers
    else:
        assert out.shape == (2, 512)
        assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training, "a pretrained analyzer must stay in eval mode (BatchNorm statistics)"


@pytest.mark.parametrize("name", SMALL_MAKERS)
def test_gradients_reach_image_and_latent(name: str) -> None:
    model = small(name)
    u = torch.zeros(2, 4, requires_grad=True)
    frame = tiny_generator(u)
    frame.image.retain_grad()
    scalar_of(name, model, frame).backward()
    assert frame.image.grad.abs().sum() > 0
    assert u.grad.abs().sum() > 0 and torch.isfinite(u.grad).all()


@pytest.mark.parametrize("name", SMALL_MAKERS)
def test_forward_and_reverse_mode_agree_under_torch_func(name: str) -> None:
    """The criteria contract: jvp and vmap-over-vjp run through the analyzer and give the same J."""
    model = small(name)
    x = torch.rand(1, 3, R, R)
    f = lambda image: model(Frame(image=image))  # noqa: E731
    v = torch.randn_like(x)
    out, jv = jvp(f, (x,), (v,))
    _, pullback = vjp(f, x)
    w = torch.randn(2, *out.shape)
    (jtw,) = vmap(pullback)(w)
    lhs, rhs = (w * jv).flatten(1).sum(1), (jtw * v).flatten(1).sum(1)
    assert torch.allclose(lhs, rhs, rtol=1e-3, atol=1e-3 * rhs.abs().max())


def test_region_names_map_to_each_parsers_labels() -> None:
    bise, parse = BiSeNetParser(size=32), ParseNetParser(size=32)
    assert bise.labels_for(["hair"]) == [17] and parse.labels_for(["hair"]) == [13]
    assert bise.labels_for(["nose", "l_eye"]) == [10, 4] and parse.labels_for(["nose", "l_eye"]) == [2, 4]
    for name in REGIONS:
        assert bise.class_names[bise.labels_for([name])[0]] == name
        assert parse.class_names[parse.labels_for([name])[0]] == name
    assert sorted(PARSENET_CLASSES) == sorted(REGIONS)


class OneHotNet(nn.Module):
    """Stands in for a parser network: records its input and answers one-hot logits of a label map."""

    def __init__(self, labels: Tensor) -> None:
        super().__init__()
        self.labels, self.seen = labels, None

    def forward(self, x: Tensor) -> tuple[Tensor]:
        self.seen = x
        return (20.0 * nn.functional.one_hot(self.labels, 19).permute(0, 3, 1, 2).float(),)


def test_both_parsers_give_the_same_region_for_the_same_name() -> None:
    """The same drawn picture, labelled in each network's own order, yields identical masks per name, and
    each network sees the normalisation it was trained with."""
    size = 32
    canonical = torch.randint(0, 19, (1, size, size))  # indices into REGIONS
    image = torch.rand(1, 3, size, size)
    masks = {}
    for parser in (BiSeNetParser(size=size), ParseNetParser(size=size)):
        to_own = torch.tensor([parser.class_names.index(n) for n in REGIONS])
        parser.net = OneHotNet(to_own[canonical])
        masks[type(parser).__name__] = [parser.region_mask(Frame(image), [n]) for n in ("hair", "nose", "l_lip")]
        expected_input = (image - parser._mean) / parser._std
        assert torch.allclose(parser.net.seen, expected_input)
    for a, b, name in zip(masks["BiSeNetParser"], masks["ParseNetParser"], ("hair", "nose", "l_lip")):
        assert torch.equal(a, b)
        assert torch.equal(a[0, 0].bool(), canonical[0] == REGIONS.index(name))
    assert torch.allclose(BiSeNetParser(size=size)._mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert torch.allclose(ParseNetParser(size=size)._std.flatten(), torch.tensor([0.5, 0.5, 0.5]))


class Returns(nn.Module):
    """Stands in for a network: always answers the same value."""

    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: Tensor) -> object:
        return self.value


def gaussian_heatmaps(points: Tensor, side: int, sigma: float = 1.5) -> Tensor:
    """[B, K, side, side] Gaussians centred at ``points`` [B, K, 2] (pixel centres at integers)."""
    grid = torch.arange(side, dtype=torch.float64)
    dx = grid.view(1, 1, 1, -1) - points[..., 0, None, None]
    dy = grid.view(1, 1, -1, 1) - points[..., 1, None, None]
    return torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))


def test_soft_argmax_recovers_known_points() -> None:
    points = torch.rand(2, 68, 2, dtype=torch.float64) * 48 + 8  # sub-pixel positions away from the border
    found = soft_argmax(gaussian_heatmaps(points, 64))
    assert (found - points).abs().max() < 0.1


def test_fan_landmarks_are_heatmap_peaks_in_image_pixels() -> None:
    """Heatmap grid -> image pixels keeps the pixel-centre convention: a peak at heatmap pixel (i, j)
    lands at the centre of the image region that heatmap pixel covers."""
    landmarker = FANLandmarker(num_modules=1, size=64)
    peaks = torch.tensor([[[3.0, 5.0], [10.0, 2.0]]])
    heatmaps = gaussian_heatmaps(peaks, 16, sigma=0.5).float()
    landmarker.net = Returns([torch.cat([heatmaps, torch.zeros(1, 66, 16, 16)], 1)])  # stands in for FAN
    found = landmarker(Frame(image=torch.rand(1, 3, R, R)))[:, :2]
    expected = (peaks + 0.5) * R / 16 - 0.5
    assert (found - expected).abs().max() < 0.05


# builder, file name, cache key, a fragment of the published URL, random network in the real layout
WEIGHT_CASES = {
    "bisenet": (bisenet, "parsing_bisenet.pth", "facexlib", "facexlib/releases/download/v0.2.0", lambda: BiSeNet(19)),
    "parsenet": (parsenet, "parsing_parsenet.pth", "facexlib", "facexlib/releases/download/v0.2.2", None),
    "fan": (fan, "2DFAN4-11f355bf06.pth.tar", "torch_hub", "adrianbulat.com/downloads/python-fan", lambda: FAN(4)),
    "arcface": (lambda path=None: arcface(path, depth=18), "ms1mv3_arcface_r18_fp16/backbone.pth", "torch_hub",
                "1drv.ms", lambda: IResNet(18)),
}


@pytest.fixture
def caches(tmp_path, monkeypatch) -> dict[str, object]:
    """Empty package cache folders, so that no real cached file can interfere."""
    dirs = {key: tmp_path / key for key in weights.CACHE_DIRS}
    for key, folder in dirs.items():
        folder.mkdir()
        monkeypatch.setitem(weights.CACHE_DIRS, key, lambda folder=folder: folder)
    return dirs


@pytest.mark.parametrize("name", WEIGHT_CASES)
def test_missing_weights_raise_one_clear_error(name: str, caches, tmp_path) -> None:
    build, file_name, cache, url, _ = WEIGHT_CASES[name]
    with pytest.raises(FileNotFoundError) as error:
        build()
    message = str(error.value)
    assert file_name in message and str(caches[cache]) in message and url in message
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build(path=missing)


@pytest.mark.parametrize("name", ["bisenet", "fan", "arcface"])
def test_checkpoint_in_the_published_layout_loads_from_the_cache(name: str, caches) -> None:
    build, file_name, cache, _, make = WEIGHT_CASES[name]
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in make().state_dict().items()}
    target = caches[cache] / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    model = build()
    key = next(iter(state))
    assert torch.equal(model.net.state_dict()[key], state[key])
    assert model.weight_checksums() == {str(target): hashlib.sha256(target.read_bytes()).hexdigest()}
    assert not model.training


@pytest.mark.parametrize("config", ["parser/bisenet", "parser/parsenet", "landmarker/fan", "identity/arcface"])
def test_config_builds_the_analyzer_and_never_downloads(config: str, caches) -> None:
    """Every conf/analyzer file names a builder that takes exactly its keys; with empty caches the build
    stops at the documented error instead of fetching anything."""
    cfg = OmegaConf.load(Path(__file__).parents[1] / "conf" / "analyzer" / f"{config}.yaml")
    builder = hydra.utils.get_method(cfg._target_)
    assert set(cfg) - {"_target_"} == set(inspect.signature(builder).parameters)
    assert cfg.path is None
    with pytest.raises(hydra.errors.InstantiationException, match="never downloads") as error:
        hydra.utils.instantiate(cfg)
    assert isinstance(error.value.__cause__, FileNotFoundError)


def test_torchscript_fan_archive_loads_by_its_parameters(caches) -> None:
    """face-alignment 1.3-1.4 published 2DFAN4 as a TorchScript .zip; its parameters and buffers load into
    FAN(4), read as data (the archive's own loader is never called)."""
    net = FAN(4).eval()
    traced = torch.jit.trace(net, torch.rand(1, 3, 64, 64), check_trace=False)
    target = caches["torch_hub"] / "2DFAN4-cd938726ad.zip"
    traced.save(str(target))
    model = fan()
    assert model.weight_path == target
    assert {k: torch.equal(v, net.state_dict()[k]) for k, v in model.net.state_dict().items()} == \
        dict.fromkeys(net.state_dict(), True)


def test_wrong_layout_names_the_file(caches) -> None:
    target = caches["facexlib"] / "parsing_bisenet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, target)
    with pytest.raises(CheckpointError, match="parsing_bisenet.pth"):
        bisenet()


def test_iresnet100_has_the_arcface_torch_layout() -> None:
    """Key names and shapes of arcface_torch's iresnet100 (blocks 3/13/30/3, a downsample only in each
    stage's first block, fc 512*7*7 -> 512, BatchNorm1d `features`)."""
    with torch.device("meta"):  # shapes only, no memory
        state = IResNet(100).state_dict()
    for stage, blocks in zip(range(1, 5), (3, 13, 30, 3)):
        assert f"layer{stage}.{blocks - 1}.bn3.running_var" in state
        assert f"layer{stage}.{blocks}.bn1.weight" not in state
        assert f"layer{stage}.0.downsample.0.weight" in state and f"layer{stage}.1.downsample.0.weight" not in state
    shapes = {"conv1.weight": (64, 3, 3, 3), "prelu.weight": (64,), "layer1.0.prelu.weight": (64,),
              "layer2.0.downsample.0.weight": (128, 64, 1, 1), "layer4.2.conv2.weight": (512, 512, 3, 3),
              "bn2.running_mean": (512,), "fc.weight": (512, 25088), "features.running_var": (512,)}
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key

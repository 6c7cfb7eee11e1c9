"""No code runs from any weight file: TorchScript archives whose ``__setstate__`` writes to a file, given to
every loader and to ``ice-exp`` under every path key. A positive control shows that ``torch.jit.load`` runs
the same archives (the write lands); the loaders read them as data and refuse them, naming the file."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from face_alignment.models import FAN
from facexlib.parsing import BiSeNet, ParseNet
from torch import nn

from ice_exp.analyzers import weights
from ice_exp.analyzers.arcface import IResNet, arcface
from ice_exp.analyzers.fan import fan
from ice_exp.analyzers.parsers import bisenet, parsenet
from ice_exp.checkpoints import CheckpointError, read_checkpoint
from ice_exp.counterfactual.classifiers import CelebAAttrResNet50, celeba_attr_resnet50, load_celeba_classifier
from ice_exp.engine import grams
from ice_exp.generators.stylegan2 import build_stylegan2, load_generator
from ice_exp.run.discovery import run
from tests.conftest import TINY, make_config
from tests.test_config_errors import ENV, REPO

MARK = 88  # the byte the payload writes


class Payload(nn.Module):
    """A module whose TorchScript ``__setstate__`` maps ``target`` into memory and overwrites its first
    bytes: what ``torch.jit.load`` runs while loading (the result is used, so the write is not optimised away)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target, self.written = target, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return self.target, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.target, self.training = state[0], state[1]
        view = torch.from_file(state[0], True, 8, dtype=torch.uint8)
        view.fill_(88)
        self.written = int(view.sum())


class Carrier(nn.Module):
    """A valid state dict (the network's own key names, as buffers) with a payload child beside it."""

    def __init__(self, state: dict[str, torch.Tensor], payload: Payload) -> None:
        super().__init__()
        for key, value in state.items():
            *path, leaf = key.split(".")
            node: nn.Module = self
            for name in path:
                if not hasattr(node, name):
                    node.add_module(name, nn.Module())
                node = getattr(node, name)
            node.register_buffer(leaf, value.clone())
        self.payload = payload

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.payload(x)


def state_of(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def payload_only(path: Path, marker: Path, state: Callable[[], dict]) -> Path:
    torch.jit.script(Payload(str(marker))).save(str(path))
    return path


def weights_and_payload(path: Path, marker: Path, state: Callable[[], dict]) -> Path:
    torch.jit.script(Carrier(state(), Payload(str(marker)))).save(str(path))
    return path


def behind_a_torch_file(path: Path, marker: Path, state: Callable[[], dict]) -> Path:
    """A legacy torch file of the valid weights with the hostile archive appended, which
    ``zipfile.is_zipfile`` finds at the end."""
    legacy, hostile = path.with_suffix(".legacy"), path.with_suffix(".ts")
    torch.save(state(), legacy, _use_new_zipfile_serialization=False)
    payload_only(hostile, marker, state)
    path.write_bytes(legacy.read_bytes() + hostile.read_bytes())
    assert zipfile.is_zipfile(path)
    return path


ARCHIVES = [payload_only, weights_and_payload]

# loader -> (file name, the network's state dict, the load)
LOADERS: dict[str, tuple[str, Callable[[], dict], Callable[[Path], Any]]] = {
    "read_checkpoint": ("weights.pt", lambda: state_of(nn.Linear(3, 2)), read_checkpoint),
    "load_generator.pt": ("stylegan2-ffhq-config-f.pt", lambda: state_of(nn.Linear(3, 2)), load_generator),
    "load_generator.pkl": ("ffhq.pkl", lambda: state_of(nn.Linear(3, 2)), load_generator),
    "build_stylegan2.pt": ("stylegan2-ffhq-config-f.pt", lambda: state_of(nn.Linear(3, 2)), lambda p: build_stylegan2(p)),
    "build_stylegan2.pkl": ("ffhq.pkl", lambda: state_of(nn.Linear(3, 2)), lambda p: build_stylegan2(p)),
    "bisenet": ("parsing_bisenet.pth", lambda: state_of(BiSeNet(19)), bisenet),
    "parsenet": ("parsing_parsenet.pth", lambda: state_of(ParseNet(512, 512, parsing_ch=19)), parsenet),
    "fan": ("2DFAN4-cd938726ad.zip", lambda: state_of(FAN(4)), fan),
    "arcface": ("backbone.pth", lambda: state_of(IResNet(18)), lambda p: arcface(p, depth=18)),
    "celeba_attr_resnet50": ("model_best.pth.tar", lambda: state_of(CelebAAttrResNet50()), celeba_attr_resnet50),
    "load_celeba_classifier": ("model_best.pth.tar", lambda: state_of(CelebAAttrResNet50()), load_celeba_classifier),
}


@pytest.fixture
def marker(tmp_path) -> Path:
    """A file the payload would overwrite (a project file in the measured attack)."""
    path = tmp_path / "victim.py"
    path.write_bytes(b"print('untouched')\n")
    return path


def untouched(marker: Path) -> bool:
    return marker.read_bytes() == b"print('untouched')\n"


@pytest.mark.parametrize("archive", [payload_only, weights_and_payload])
def test_the_naive_torch_jit_load_runs_the_payload(archive, marker, tmp_path) -> None:
    """Positive control: the archives are hostile, and torch.jit.load (the old reader) runs them."""
    path = archive(tmp_path / "weights.pt", marker, LOADERS["fan"][1] if archive is weights_and_payload else dict)
    torch.jit.load(str(path))
    assert marker.read_bytes()[:8] == bytes([MARK] * 8)


@pytest.mark.parametrize("archive", ARCHIVES)
@pytest.mark.parametrize("loader", LOADERS)
def test_no_loader_runs_a_torchscript_payload_and_the_error_names_the_file(loader, archive, marker, tmp_path) -> None:
    file_name, state, load = LOADERS[loader]
    path = archive(tmp_path / file_name, marker, state)
    with pytest.raises(CheckpointError) as error:
        load(path)
    if loader != "read_checkpoint":  # the reader gives the cause; the loaders add the model and the file
        assert str(path) in str(error.value), str(error.value)
    assert "__setstate__" in str(error.value) and "nothing was run" in str(error.value), str(error.value)
    assert untouched(marker), "the archive's __setstate__ ran"


@pytest.mark.parametrize("loader", ["read_checkpoint", "fan", "load_generator.pt"])
def test_an_archive_appended_to_a_torch_file_is_not_opened(loader, marker, tmp_path) -> None:
    """The format is read from the first bytes: a legacy torch file stays one, whatever zip follows it."""
    file_name, state, load = LOADERS[loader]
    path = behind_a_torch_file(tmp_path / file_name, marker, state)
    try:
        load(path)
    except CheckpointError as error:
        assert "__setstate__" not in str(error), "the appended archive was read"
    assert untouched(marker)


@pytest.mark.parametrize("published", ["2DFAN4-cd938726ad.zip", "2DFAN4_1.6-c827573f02.zip"])
def test_fan_without_a_path_refuses_a_hostile_archive_in_the_hub_cache(published, marker, tmp_path, monkeypatch) -> None:
    """``fan()`` picks a file up from $TORCH_HOME/hub/checkpoints by its published name: read, not run."""
    monkeypatch.setitem(weights.CACHE_DIRS, "torch_hub", lambda: tmp_path)
    weights_and_payload(tmp_path / published, marker, LOADERS["fan"][1])
    with pytest.raises(CheckpointError, match=f"{published}.*__setstate__"):
        fan()
    assert untouched(marker)


def test_a_torchscript_fan_without_code_loads_as_data(tmp_path, marker) -> None:
    """The weights of a payload-free archive (face-alignment 1.3-1.4's format) load exactly."""
    net = FAN(4).eval()
    path = tmp_path / "2DFAN4-cd938726ad.zip"
    torch.jit.trace(net, torch.rand(1, 3, 64, 64), check_trace=False).save(str(path))
    loaded = fan(path).net.state_dict()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.items()) and loaded.keys() == net.state_dict().keys()


# config key -> the overrides that make a run load that file (TINY toyface elsewhere)
PATH_KEYS = {
    "generator.path": ["generator=stylegan2", "generator.resolution=null"],
    "analyzer.parser.path": ["analyzer/parser=bisenet"],
    "analyzer.landmarker.path": ["analyzer/landmarker=fan"],
    "analyzer.identity.path": ["analyzer/identity=arcface", "analyzer.identity.depth=18"],
    "classifier.path": ["counterfactual.enabled=true", "classifier=celeba_attr_resnet50"],
}


@pytest.mark.parametrize("key", PATH_KEYS)
def test_a_run_given_a_hostile_archive_under_any_path_key_stops_naming_it(key, marker, tmp_path, monkeypatch) -> None:
    def no_compute(*args, **kwargs):
        raise AssertionError("a Jacobian was computed before the weights were read")

    monkeypatch.setattr(grams, "sample_grams", no_compute)
    path = weights_and_payload(tmp_path / "weights.pkl", marker, LOADERS["fan"][1])
    with pytest.raises(CheckpointError, match="__setstate__") as error:
        run(make_config(*TINY, *PATH_KEYS[key], f"{key}={path}"), tmp_path / "run")
    assert str(path) in str(error.value) and untouched(marker)


def test_ice_exp_given_a_hostile_archive_exits_naming_it(marker, tmp_path) -> None:
    path = payload_only(tmp_path / "parsing_bisenet.pth", marker, dict)
    proc = subprocess.run([sys.executable, "-m", "ice_exp", "analyzer/parser=bisenet", f"analyzer.parser.path={path}",
                           "logger=none", f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and str(path) in proc.stderr and "__setstate__" in proc.stderr, proc.stderr[-2000:]
    assert untouched(marker)

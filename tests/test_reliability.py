"""Nothing lost, nothing blocked: each fault injected, then the run's results survive and the user gets one
specific message (docs/reliability.md lists them)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from face_alignment.models import FAN
from facexlib.parsing import BiSeNet, ParseNet
from safetensors.torch import load_file, save_file

from ice_exp.analyzers import Analyzers
from ice_exp.analyzers.arcface import IResNet, arcface
from ice_exp.analyzers.fan import fan
from ice_exp.analyzers.parsers import bisenet, parsenet
from ice_exp.checkpoints import CheckpointError, MissingCheckpoint
from ice_exp.counterfactual.classifiers import CelebAAttrResNet50, celeba_attr_resnet50
from ice_exp.criteria.terms import build_terms
from ice_exp.engine.grams import SampleGrams
from ice_exp.generators.stylegan2 import load_generator
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.run.tracking import close, make_logger
from ice_exp.world import OracleLandmarker, OracleParser
from tests.test_engine import CRITERIA
from tests.test_stylegan2 import rosinality_state, tiny_generator


# --- W&B never blocks a run ---------------------------------------------------------------------------------
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable_wandb(tmp_path, monkeypatch):
    """W&B pointed at a closed loopback port, with all its files under tmp_path."""
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    yield
    wandb.teardown()


@pytest.mark.parametrize("key", ["short-key", "k" * 40], ids=["rejected-key", "no-server"])
def test_unreachable_wandb_falls_back_to_offline_in_bounded_time(key, unreachable_wandb, tmp_path, monkeypatch,
                                                                 caplog) -> None:
    monkeypatch.setenv("WANDB_API_KEY", key)
    cfg = {"_target_": "ice_exp.run.tracking.wandb_logger", "_partial_": True, "mode": "auto", "init_timeout": 2}
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ice_exp.run.tracking"):
        run = make_logger(cfg, tmp_path, "run", [], {"seed": 0})
    assert time.monotonic() - start < 2 + 6  # the bound plus starting wandb twice on a loaded machine
    assert run.settings.mode == "offline"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    run_dir = Path(run.dir).parent
    assert "logging offline" in warning and f"wandb sync {run_dir}" in warning
    assert ("AuthenticationError" if key == "short-key" else "CommError") in warning
    run.log({"gain": 1.5})
    close(run)
    assert list(run_dir.glob("*.wandb")), "the offline run holds the logged data for `wandb sync`"


def test_a_run_with_an_unreachable_wandb_finishes_with_all_its_results(unreachable_wandb, tmp_path, monkeypatch,
                                                                       caplog) -> None:
    from ice_exp.run.discovery import run
    from tests.conftest import TINY, make_config

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    cfg = make_config("logger=wandb", "logger.init_timeout=2", *TINY,
                      "samples.eval_num=1")
    with caplog.at_level(logging.WARNING, logger="ice_exp.run.tracking"):
        metrics = run(cfg, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["gt/dim_found"] == metrics["gt/dim_found"] == 3
    assert (tmp_path / "subspace.safetensors").is_file()
    assert any("wandb sync" in r.getMessage() for r in caplog.records)
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb")), "the metrics are kept for `wandb sync`"


# --- a self-healing Gram cache -------------------------------------------------------------------------------
def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x8f" * 4096)


def nan(path: Path) -> None:
    """A NaN written with a valid checksum (a writer that saved a broken sum): only the finite check sees it."""
    from ice_exp.engine.cache import tensors_sha256

    grams = load_file(path)
    next(iter(grams.values()))[0, 0] = float("nan")
    save_file(grams, path, metadata={"sha256": tensors_sha256(grams)})


def flipped(path: Path) -> None:
    """One byte of the last tensor changed, the header intact: only the checksum sees it."""
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))


def no_checksum(path: Path) -> None:
    save_file(load_file(path), path)


def wrong_terms(path: Path) -> None:
    from ice_exp.engine.cache import tensors_sha256

    grams = {f"renamed_{k}": v for k, v in load_file(path).items()}
    save_file(grams, path, metadata={"sha256": tensors_sha256(grams)})


@pytest.mark.parametrize("damage", [truncate, garbage, nan, flipped, no_checksum, wrong_terms])
def test_a_bad_cache_entry_is_set_aside_named_and_recomputed(damage, tmp_path, caplog) -> None:
    generator = ToyFaceGenerator(resolution=32, dtype=torch.float64)
    terms = build_terms(CRITERIA, Analyzers(parser=OracleParser(), landmarker=OracleLandmarker()))
    z = torch.randn(generator.z_dim, generator=torch.Generator().manual_seed(8))
    u = generator.encode(z[None], "s")[0].detach()
    fresh = SampleGrams(generator, terms, "s")(z, u)
    grams = SampleGrams(generator, terms, "s", cache_dir=tmp_path)
    grams(z, u)
    path = grams.cache.path(z)
    assert {k: torch.equal(v, fresh[k]) for k, v in grams.cache.load(z).items()} == dict.fromkeys(fresh, True)
    damage(path)
    with caplog.at_level(logging.WARNING, logger="ice_exp.engine.cache"):
        again = grams(z, u)
    assert {k: torch.equal(v, fresh[k]) for k, v in again.items()} == dict.fromkeys(fresh, True)
    (aside,) = path.parent.glob(f"{path.name}.bad-*")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(path) in warning and aside.name in warning and "recomputed" in warning
    assert torch.equal(grams.cache.load(z)["activate"], fresh["activate"]), "the recomputed entry was stored again"


# --- one checkpoint reader for every weight file ---------------------------------------------------------------
def state_of(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def celeba_file() -> dict[str, Any]:
    """d-li14's model_best.pth.tar layout: a training record around a DataParallel state dict."""
    state = {f"module.{k}": v for k, v in state_of(CelebAAttrResNet50()).items()}
    return {"epoch": 1, "arch": "resnet50", "best_prec1": 90.0, "state_dict": state}


def rosinality_file() -> dict[str, Any]:
    """rosinality's training checkpoint: g_ema, latent_avg and the argparse options."""
    G = tiny_generator()
    return {"g_ema": rosinality_state(G), "latent_avg": G.mapping_network.w_avg.clone(),
            "args": argparse.Namespace(size=G.resolution)}


# loader -> (its model's name in messages, file name, the file's contents in the published format, where its
# state dict sits in them, how a run loads it)
LOADERS: dict[str, tuple[str, str, Callable[[], Any], Callable[[Any], dict], Callable[[Path], Any]]] = {
    "bisenet": ("BiSeNet", "parsing_bisenet.pth", lambda: state_of(BiSeNet(19)), lambda c: c, bisenet),
    "parsenet": ("ParseNet", "parsing_parsenet.pth", lambda: state_of(ParseNet(512, 512, parsing_ch=19)),
                 lambda c: c, parsenet),
    "fan": ("FAN", "2DFAN4-11f355bf06.pth.tar", lambda: state_of(FAN(4)), lambda c: c, fan),
    "arcface": ("ArcFace", "backbone.pth", lambda: state_of(IResNet(18)), lambda c: c,
                lambda path: arcface(path, depth=18)),
    "celeba": ("CelebAAttrResNet50", "model_best.pth.tar", celeba_file, lambda c: c["state_dict"],
               celeba_attr_resnet50),
    "stylegan2": ("StyleGAN2 generator", "stylegan2-tiny.pt", rosinality_file, lambda c: c["g_ema"], load_generator),
}


class Hostile:
    """Runs a shell command when unpickled by an unrestricted loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write(path: Path, contents: Any) -> Path:
    torch.save(contents, path)
    return path


def missing(path: Path, contents_of: Callable[[], Any], inner: Callable[[Any], dict]) -> str:
    return "not found|does not exist"


def empty(path: Path, contents_of: Callable[[], Any], inner: Callable[[Any], dict]) -> str:
    path.write_bytes(b"")
    return "the file is empty"


def truncated(path: Path, contents_of: Callable[[], Any], inner: Callable[[Any], dict]) -> str:
    data = write(path, contents_of()).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "truncated or corrupt zip archive"


def random_bytes(path: Path, contents_of: Callable[[], Any], inner: Callable[[Any], dict]) -> str:
    path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()))
    return "not a torch file|not a StyleGAN2 checkpoint: its first bytes begin neither"


def random_after_a_pickle_header(path: Path, contents_of: Callable[[], Any], inner: Callable[[Any], dict]) -> str:
    """Pickle protocol 4's first bytes, then noise: the pickle reader's own failure (for a huge length field a
    bare MemoryError) is named as malformed data, never an empty text."""
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1)).tolist()
    path.write_bytes(b"\x80\x04\x95" + bytes(noise))
    return "a plain Python pickle, not a torch.save file|not a readable pickle: the data is malformed or cut short \\(\\w+"


def foreign_zip(path: Path, contents_of: Callable[[], Any], inner: Callable[[Any], dict]) -> str:
    """A valid zip that torch did not write: named as such, not as a damaged download."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not weights")
    return "a zip archive but not a torch file \\(no data.pkl"


def code_in_the_pickle(path: Path, contents_of: Callable[[], Any], inner: Callable[[Any], dict]) -> str:
    write(path, {"weights": Hostile(path.with_name("payload-ran"))})
    return "asks to import posix.system .*refused, nothing from it was run"


def non_finite_weight(path: Path, contents_of: Callable[[], Any], inner: Callable[[Any], dict]) -> str:
    contents = contents_of()
    name = next(k for k, v in inner(contents).items() if v.is_floating_point())
    inner(contents)[name].view(-1)[0] = float("nan")
    write(path, contents)
    return f"non-finite values in tensor .*{re.escape(name)}"


def wrong_keys(path: Path, contents_of: Callable[[], Any], inner: Callable[[Any], dict]) -> str:
    contents = contents_of()
    state = inner(contents)
    name = list(state)[-1]  # the first names the format of a rosinality file
    state[f"{name}_renamed"] = state.pop(name)
    write(path, contents)
    return f"(missing keys|lacks) .*{re.escape(name.removeprefix('module.'))}"


@pytest.mark.parametrize("fault", [missing, empty, truncated, random_bytes, random_after_a_pickle_header, foreign_zip,
                                   code_in_the_pickle, non_finite_weight, wrong_keys])
@pytest.mark.parametrize("loader", LOADERS)
def test_every_bad_weight_file_names_file_model_and_cause(loader, fault, tmp_path) -> None:
    model, file_name, contents_of, inner, load = LOADERS[loader]
    path = tmp_path / file_name
    cause = fault(path, contents_of, inner)
    with pytest.raises(MissingCheckpoint if fault is missing else CheckpointError) as error:
        load(path)
    message = str(error.value)
    assert str(path) in message and model in message, message
    assert re.search(cause, message), message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert not path.with_name("payload-ran").exists(), "the pickled payload ran"


@pytest.mark.parametrize("loader", [name for name in LOADERS if name != "stylegan2"])
def test_a_generator_file_given_to_another_model_is_named_a_generator_file(loader, tmp_path) -> None:
    model, file_name, _, _, load = LOADERS[loader]
    path = write(tmp_path / file_name, rosinality_file())
    with pytest.raises(CheckpointError, match="this is a rosinality StyleGAN2 generator checkpoint .*generator.path"):
        load(path)


def test_a_fan_of_other_depth_is_named_by_its_depth(tmp_path) -> None:
    path = write(tmp_path / "fan2.pth", {"conv1.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="FAN 2D landmarks \\(2 hourglass modules\\)") as error:
        fan(path, num_modules=2)
    assert "2DFAN-4" not in str(error.value)


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_one(tmp_path) -> None:
    from ice_exp.common.files import atomic_write, write_json

    path = tmp_path / "metrics.json"
    write_json(path, {"gt/pass": 1})

    def dies_halfway(tmp: Path) -> None:
        tmp.write_text('{"gt/pa')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, dies_halfway)
    assert json.loads(path.read_text()) == {"gt/pass": 1} and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

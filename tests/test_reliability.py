"""Nothing lost, nothing blocked: each fault injected, then the run's results survive and the user gets one
specific message (docs/reliability.md lists them)."""
from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ice_exp.analyzers import Analyzers
from ice_exp.generators.toyface import OracleLandmarker, OracleParser, ToyFaceGenerator
from ice_exp.grams import SampleGrams
from ice_exp.terms import build_terms
from ice_exp.tracking import close, make_logger
from tests.test_engine import CRITERIA


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
    cfg = {"backend": "wandb", "mode": "auto", "init_timeout": 2}
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ice_exp.tracking"):
        logger = make_logger(cfg, tmp_path, "run", [], {"seed": 0})
    assert time.monotonic() - start < 2 + 6  # the bound plus starting wandb twice on a loaded machine
    assert logger.experiment.settings.mode == "offline"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    run_dir = Path(logger.experiment.dir).parent
    assert "logging offline" in warning and f"wandb sync {run_dir}" in warning
    assert ("AuthenticationError" if key == "short-key" else "CommError") in warning
    logger.log_metrics({"gain": 1.5})
    close(logger)
    assert list(run_dir.glob("*.wandb")), "the offline run holds the logged data for `wandb sync`"


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

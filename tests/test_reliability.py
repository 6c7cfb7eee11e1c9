"""Nothing lost, nothing blocked: each fault injected, then the run's results survive and the user gets one
specific message (docs/reliability.md lists them)."""
from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from ice_exp.tracking import close, make_logger


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

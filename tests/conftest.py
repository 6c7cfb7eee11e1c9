"""Shared test helpers: compose the real Hydra config with overrides, small and W&B-free."""
from __future__ import annotations

import os
import re

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ice_exp.config import CONF_DIR

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

SMALL = ["logger=none", "trainer.enable_progress_bar=false", "samples.eval_num=2", "counterfactual.enabled=false"]
TINY = ["generator.resolution=32", "samples.indices=[0]"]  # the smallest toyface run: 32 px, one training face
# the StyleGAN2 code path without weight files: a tiny generator and the real analyzers' networks, random weights
RANDOM_STYLEGAN2 = ["generator=stylegan2_random", "analyzer/parser=bisenet_random", "analyzer/landmarker=fan_random",
                    "analyzer/identity=arcface_random"]


def make_config(*overrides: str, small: bool = True) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=(SMALL if small else []) + list(overrides))


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every markdown table line (header and body rows; the |---| rules left out)."""
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]] for line in markdown.splitlines()
            if line.startswith("|") and not set(line) <= set("|:- ")]


@pytest.fixture
def config():
    return make_config

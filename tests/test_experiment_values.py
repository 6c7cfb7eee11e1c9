"""Every value an experiment file sets is the value the composed run uses: nothing silently lost.

(`_self_` listed after `experiment` in conf/config.yaml once let the primary config win over 13 of the
experiment files' values; this test composes each file and compares every leaf it sets.)
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ice_exp.config import CONF_DIR

EXPERIMENTS = Path(CONF_DIR) / "experiment"
FILES = sorted(p.relative_to(EXPERIMENTS).with_suffix("").as_posix() for p in EXPERIMENTS.rglob("*.yaml"))


def leaves(node: object, prefix: str = "") -> dict[str, object]:
    """{dotted path: value} of every leaf of a plain (container) config; lists are leaves."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def own_values(name: str) -> dict[str, object]:
    """The leaves an experiment file sets itself (its `defaults` list excluded)."""
    raw = OmegaConf.to_container(OmegaConf.load(EXPERIMENTS / f"{name}.yaml"), resolve=False)
    raw.pop("defaults", None)
    return leaves(raw)


def test_experiment_files_are_found():
    assert {"toyface/face_boundary", "toyface/seed/face_boundary", "stylegan2/face_boundary"} <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_every_value_an_experiment_sets_is_the_composed_value(name):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    composed = leaves(OmegaConf.to_container(cfg, resolve=False))
    expected = own_values(name)
    lost = {path: (value, composed.get(path, "<missing>")) for path, value in expected.items() if composed.get(path, "<missing>") != value}
    assert not lost, f"experiment={name}: values lost in composition (file value, composed value): {lost}"


def test_a_lost_value_would_be_caught():
    """The comparison sees a value the primary config overrides (what the old defaults order did)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["experiment=toyface/face_boundary", "samples.indices=[0,1]"])
    composed = leaves(OmegaConf.to_container(cfg, resolve=False))
    assert own_values("toyface/face_boundary")["samples.indices"] != composed["samples.indices"]

"""Each config value's default and rule have one home: the schema (ice_exp/config/schema.py) holds the
default, which the classes' keyword defaults read; ice_exp/config/rules.py holds the range, which the up-front
check and the classes both apply. The YAML files show every knob with a comment, so their values must be the
schema's wherever the file is the default (not a preset such as ice_recommended), and a rule must name a key
the schema has (a renamed key must not silently lose its range check)."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ice_exp.config import CONF_DIR, rules, schema
from ice_exp.counterfactual.search import SearchConfig
from ice_exp.engine.grams import SampleGrams
from ice_exp.solvers.consensus import Consensus
from ice_exp.solvers.ice import EarlyProjection
from ice_exp.solvers.latent import GANSpace, SeFa
from ice_exp.solvers.peers import LowRankGAN, ReSeFa

CONF = Path(CONF_DIR)
SOLVERS = {"early_projection": schema.IceSolver, "ice_consensus": schema.ConsensusSolver, "lowrankgan": schema.LowRankGAN,
           "resefa": schema.ReSeFa, "sefa": schema.SeFa, "ganspace": schema.GANSpace}  # conf/solver defaults files
CLASSES = [(EarlyProjection, schema.IceSolver), (Consensus, schema.ConsensusSolver), (LowRankGAN, schema.LowRankGAN),
           (ReSeFa, schema.ReSeFa), (SeFa, schema.SeFa), (GANSpace, schema.GANSpace), (SampleGrams, schema.Engine),
           (SearchConfig, schema.Counterfactual)]


def schema_defaults(node: type) -> dict:
    return {k: (v.value if isinstance(v, schema.Choice) else v)
            for k, v in OmegaConf.to_container(OmegaConf.structured(node)).items() if not k.startswith("_")}


def yaml_values(path: Path, key: str | None = None) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    node = cfg[key] if key else cfg
    return {k: v for k, v in node.items() if k not in ("defaults", "_target_")}


CASES = [*((f"solver/{name}.yaml", None, node) for name, node in SOLVERS.items()),
         ("config.yaml", "samples", schema.Samples), ("config.yaml", "engine", schema.Engine),
         ("config.yaml", "viz", schema.Viz), ("counterfactual/default.yaml", None, schema.Counterfactual)]


@pytest.mark.parametrize(("file", "key", "node"), CASES, ids=[f"{f}:{k or ''}" for f, k, _ in CASES])
def test_a_default_file_shows_every_key_of_its_schema_node_at_the_schema_default(file, key, node):
    shown, defaults = yaml_values(CONF / file, key), schema_defaults(node)
    assert set(shown) == set(defaults), f"{file}: keys the schema has and the file does not show, or the reverse"
    assert {k: v for k, v in shown.items() if v != defaults[k]} == {}, f"{file}: values that are not the schema's"


@pytest.mark.parametrize(("cls", "node"), CLASSES, ids=[c.__name__ for c, _ in CLASSES])
def test_a_class_takes_its_keyword_defaults_from_the_schema(cls, node):
    defaults = schema_defaults(node)
    taken = {k: p.default for k, p in inspect.signature(cls).parameters.items()
             if p.default is not inspect.Parameter.empty and k in defaults}
    assert taken and taken == {k: defaults[k] for k in taken}


RULE_TABLES = [(rules.SOLVER, [schema.IceSolver, schema.ConsensusSolver, schema.LowRankGAN, schema.ReSeFa, schema.SeFa,
                               schema.GANSpace]),
               (rules.ENGINE, [schema.Engine]), (rules.SEARCH, [schema.Counterfactual]),
               (rules.COUNTERFACTUAL, [schema.Counterfactual])]


@pytest.mark.parametrize(("table", "nodes"), RULE_TABLES, ids=["solver", "engine", "search", "counterfactual"])
def test_every_rule_names_a_key_of_the_schema(table, nodes):
    keys = {f.name for node in nodes for f in dataclasses.fields(node)}
    assert set(table) - keys == set()


def test_every_run_rule_names_a_key_of_the_composed_config():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config")
    assert [k for k in rules.RUN if OmegaConf.select(cfg, k, default="<absent>") == "<absent>"] == []


def test_a_class_refuses_what_the_config_check_refuses():
    """The same rule, the same words, in both places."""
    with pytest.raises(ValueError, match=r"solver.rho: must be a finite number in \[0, 1\), got 1.5"):
        EarlyProjection(rho=1.5)
    with pytest.raises(ValueError, match="solver.tau: must be a finite number in"):
        ReSeFa(tau=-1.0)
    with pytest.raises(ValueError, match="solver.batch: must be an integer >= 1"):
        GANSpace(batch=0)

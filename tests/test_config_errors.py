"""Every bad config value of docs/config_errors.md, one case each: it fails before any Jacobian, with a message
that names the key and what is allowed; the apps report it within five seconds (before torch is imported).

Three stages, as the docs' table: the schema (ice_exp/config/schema.py) when Hydra composes the config, the range
checks (ice_exp/config/checks.py) right after, and the models' vocabularies (regions, landmark groups, parts,
criterion keys) in the build step."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from ice_exp.config import CONF_DIR, rules
from ice_exp.counterfactual.search import SearchConfig
from ice_exp.engine import grams
from ice_exp.run.discovery import run
from tests.conftest import TINY, make_config

REPO = Path(CONF_DIR).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
CELEBA = ["counterfactual.enabled=true", "classifier=celeba_attr_resnet50"]

# (overrides, the key the message names, the allowed values it states)
SCHEMA = [
    (["space=q"], "space", "expected one of [z, w, wp, s]"),
    (["engine.mode=fast"], "engine.mode", "[auto, loop, vjp, jvp]"),
    (["engine.precision=fp8"], "engine.precision", "[fp32, tf32, bf16]"),
    (["solver.null_space=exact"], "solver.null_space", "[intersection, sequential]"),
    (["solver=lowrankgan", "solver.order=best"], "solver.order", "[foreground, gain]"),
    (["solver=sefa", "solver.torgb=first"], "solver.torgb", "[last, all, none]"),
    (["logger=wandb", "logger.mode=loud"], "logger.mode", "[auto, online, offline, disabled]"),
    (["seed=abc"], "seed", "could not be converted to Integer"),
    (["samples.pool=abc"], "samples.pool", "could not be converted to Integer"),
    (["counterfactual.iterations=many"], "counterfactual.iterations", "could not be converted to Integer"),
    (["samples.pol=3"], "samples.pol", "Key 'pol' not in 'Samples'"),
    (["solver.rh=0.1"], "solver.rh", "Key 'rh' not in 'IceSolver'"),
    (["criteria.suppress.other_landmarks.ratoi=0.1"], "criteria.suppress.other_landmarks.ratoi", "Key 'ratoi' not in 'Term'"),
]
RANGES = [
    (["solver.rho=-1"], "solver.rho", "[0, 1)"),
    (["solver.rho=nan"], "solver.rho", "finite number in [0, 1)"),
    (["solver.intersection_tol=0"], "solver.intersection_tol", "(0, inf)"),
    (["viz.magnitude=nan"], "viz.magnitude", "finite number in (0, inf)"),
    (["criteria.suppress.outside_mouth.criterion.size=0"], "criteria.suppress.outside_mouth.criterion.size", ">= 1"),
    (["samples.eval_num=-1"], "samples.eval_num", ">= 0"),
    (["samples.pool=0"], "samples.pool", ">= 1"),
    (["generator.curvature=-0.5"], "generator.curvature", "finite number in [0, inf)"),
    (["samples.indices=[0,40]"], "samples.indices", "[0, 32)"),
    (["counterfactual.enabled=true", "counterfactual.iterations=-1"], "counterfactual.iterations", ">= 0"),
    ([*CELEBA, "classifier.path=/nonexistent/model_best.pth.tar"], "classifier.path", "model_best.pth.tar or the folder"),
    ([*CELEBA, "classifier.attribute=Handsome"], "classifier.attribute", "Attractive"),
    (["trainer=ddp_cpu", "trainer.strategy=ddp_spawn"], "trainer.strategy", "ddp"),
]
MODELS = [
    (["criteria.suppress.outside_mouth.criterion.regions=[mouth,lipz]"], "regions", "u_lip"),
    (["criteria.activate.criterion.group=mouths"], "group", "inner_lip"),
    (["criteria.suppress.other_landmarks.ratio=1.5"], "criteria.suppress.other_landmarks.ratio", "(0, 1)"),
    (["criteria.suppress.other_landmarks.ratio=0"], "criteria.suppress.other_landmarks.ratio", "(0, 1)"),
    (["criteria.activate.part=everything"], "criteria.activate.part", "group, others"),
    (["engine.suppress_rank=0"], "engine.suppress_rank", ">= 1 or null"),
    (["analyzer.parser.mask_mode=seed"], "analyzer.parser.mask_mode", "allowed values: image"),
    (["analyzer/landmarker=fan_random", "analyzer.landmarker.heatmap_mode=sed"], "analyzer.landmarker.heatmap_mode",
     "relu, seed"),
    (["+criteria.suppress.other_landmarks.criterion.colour=red"], "criteria.suppress.other_landmarks.criterion",
     "allowed keys: group, centred"),
    (["criteria.activate.criterion._target_=ice_exp.criteria.Nothing"], "criteria.activate.criterion._target_",
     "ice_exp.criteria.MaskedPixels"),
    (["criteria.activate.criterion._target_=ice_exp.config.task.load_task"], "criteria.activate.criterion._target_",
     "ice_exp.criteria.LandmarkGroup"),
]


def ids(cases: list) -> list[str]:
    return [" ".join(case[0]) for case in cases]


@pytest.mark.parametrize("overrides, key, allowed", SCHEMA, ids=ids(SCHEMA))
def test_the_schema_refuses_a_wrong_key_type_or_choice_when_composing(overrides, key, allowed):
    with pytest.raises(ConfigCompositionException) as err:
        make_config(*overrides)
    message = f"{err.value}\n{err.value.__cause__}"
    assert f"full_key: {key}\n" in message and allowed in message, message


@pytest.mark.parametrize("overrides, key, allowed", RANGES + MODELS, ids=ids(RANGES + MODELS))
def test_a_bad_value_fails_before_any_jacobian_naming_key_and_allowed_values(overrides, key, allowed, monkeypatch, tmp_path):
    def no_compute(*args, **kwargs):
        raise AssertionError("a Jacobian was computed before the config was checked")

    monkeypatch.setattr(grams, "sample_grams", no_compute)
    with pytest.raises(ValueError) as err:
        run(make_config(*TINY, *overrides), tmp_path)
    assert f"{key}:" in str(err.value) and allowed in str(err.value), str(err.value)
    if key == "samples.pool":
        assert "samples.indices" not in str(err.value)  # the pool is named, not the indices it makes invalid



# one bad value for every rule the counterfactual search enforces on its own settings
SEARCH_BAD = {"iterations": -1, "lr": 0, "momentum": 1.0, "weight_decay": -0.1, "target_class": "both",
              "stop_probability": 1.0, "norm_bound": 0}


def test_every_setting_of_the_search_has_a_rule_and_a_case() -> None:
    assert set(SEARCH_BAD) == {f.name for f in fields(SearchConfig)} == set(rules.SEARCH)


@pytest.mark.parametrize("key", SEARCH_BAD)
def test_a_value_the_search_refuses_is_refused_before_any_jacobian(key, monkeypatch, tmp_path) -> None:
    with pytest.raises(ValueError) as by_the_class:
        SearchConfig(**{key: SEARCH_BAD[key]})
    monkeypatch.setattr(grams, "sample_grams", lambda *a, **k: pytest.fail("a Jacobian was computed first"))
    with pytest.raises(ValueError) as up_front:
        run(make_config(*TINY, "counterfactual.enabled=true", f"counterfactual.{key}={SEARCH_BAD[key]}"), tmp_path)
    assert str(by_the_class.value) in str(up_front.value), (str(by_the_class.value), str(up_front.value))


@pytest.mark.parametrize("overrides, key, allowed", SCHEMA[:1] + RANGES, ids=ids(SCHEMA[:1] + RANGES))
def test_the_app_reports_a_bad_value_within_five_seconds(overrides, key, allowed, tmp_path):
    """``ice-exp <bad value>`` exits non-zero naming the key, before importing torch (about 0.5 s here)."""
    proc, elapsed = app("ice_exp", [*overrides, f"hydra.run.dir={tmp_path}"])
    assert proc.returncode != 0 and key in proc.stderr and allowed in proc.stderr, proc.stderr[-2000:]
    assert elapsed < 5, f"{elapsed:.1f} s"


@pytest.mark.parametrize("module, extra", [("ice_exp.apps.compare", []), ("ice_exp.apps.explain", ["run_dirs=[x]"])])
def test_compare_and_explain_report_a_bad_value_within_five_seconds(module, extra, tmp_path):
    proc, elapsed = app(module, [*extra, "counterfactual.iterations=-1", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode != 0 and "counterfactual.iterations: must be an integer >= 0" in proc.stderr, proc.stderr[-2000:]
    assert elapsed < 5, f"{elapsed:.1f} s"


def app(module: str, overrides: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *overrides], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=60)
    return proc, time.perf_counter() - started


def test_a_notebook_composes_the_run_config_after_import_ice_exp():
    """Hydra's Compose API in a fresh interpreter with nothing imported but ice_exp (the schema must be registered
    by the package itself, not by whichever module a run happens to import first)."""
    code = ("import ice_exp\nfrom hydra import compose, initialize_config_dir\n"
            "with initialize_config_dir(config_dir=ice_exp.CONF_DIR, version_base='1.3'):\n"
            "    cfg = compose('config', overrides=['experiment=toyface/mouth_shape', 'solver.rho=1e-3'])\n"
            "print(cfg.criteria.name, cfg.solver.rho)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["mouth_shape", "0.001"]

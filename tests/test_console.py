"""The console of a run: its own closing table and the warnings a user must act on, nothing from wandb's or
Lightning's chatter, nor library deprecations."""
from __future__ import annotations

import math
import os
import subprocess
import sys

from ice_exp.apps.discover import advice, results_table
from tests.conftest import TINY
from tests.test_config_errors import REPO


def test_a_run_prints_its_results_table_and_no_library_chatter(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO),
           **{var: str(tmp_path / var.lower()) for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}}
    done = subprocess.run([sys.executable, "-m", "ice_exp", *TINY, "samples.eval_num=2", "counterfactual.enabled=false",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    table = console[console.index("results of mouth_shape:"):].splitlines()
    assert [line.split()[0] for line in table[1:4]] == ["gt/pass", "gt/dim_found", "gt/dim_true"]
    assert any(line.split()[0] == "eval/leak/outside_mouth" for line in table[1:])
    assert any(line.split()[0] == "trust/heldout_share" for line in table[1:])  # the score a real generator's run has
    assert f"upload with `wandb sync {tmp_path / 'run' / 'wandb'}/offline-run-" in console
    for chatter in ("wandb:", "GPU available", "TPU available", "Tip:", "LeafSpec", "torch.jit.script", "warnings.warn("):
        assert chatter not in console, chatter


def test_the_user_is_warned_of_an_empty_subspace_and_of_a_missed_ground_truth_bar():
    empty = {"solver/num_directions": 0, "gt/pass": 0, "gt/purity_mean": math.nan}
    (warning,) = advice(empty)
    assert "no direction found" in warning and "criteria.suppress.<term>.ratio" in warning
    missed = {"solver/num_directions": 2, "gt/pass": 0, "gt/dim_found": 2, "gt/dim_true": 3, "gt/purity_mean": 0.97}
    (warning,) = advice(missed)
    assert "misses the ground-truth bar" in warning and "gt/dim_found 2, gt/dim_true 3" in warning
    assert advice({**missed, "gt/pass": 1}) == [] and advice({"solver/num_directions": 3}) == []  # no truth known
    assert results_table("t", {"eval/gain": 2.0, "eval/gain_per_direction": [1.0], "gt/pass": 1, "trust/heldout_share": 0.5,
                               "trust/heldout_share_per_direction": [0.5]}).splitlines() == [
        "t", "  gt/pass              1", "  eval/gain            2", "  trust/heldout_share  0.5"]


def test_the_accumulation_and_evaluation_bars_say_what_they_do(capfd, monkeypatch):
    from tqdm.auto import tqdm

    import ice_exp.run.evaluation
    from ice_exp.engine.accumulate import accumulate
    from ice_exp.run.build import accumulation_trainer, build_setup
    from ice_exp.run.evaluation import score
    from ice_exp.solvers.base import Problem
    from ice_exp.solvers.ice import EarlyProjection
    from tests.conftest import make_config

    cfg = make_config(*TINY, "trainer.enable_progress_bar=true", "samples.eval_num=2")
    assert "callbacks" not in accumulation_trainer(make_config(*TINY, "trainer.enable_progress_bar=false").trainer)
    setup = build_setup(cfg)
    trainer = accumulation_trainer(cfg.trainer)
    assert trainer["callbacks"][0].disable is None  # off without a terminal: forced on here
    trainer["callbacks"][0].disable = False
    grams = accumulate(setup.sample_grams, setup.z_train, trainer)
    bar = capfd.readouterr().out  # Lightning's bars write to stdout
    assert "accumulating JᵀJ (samples)" in bar and "sample/s" in bar  # from its first draw: never Lightning's words
    assert "it/s" not in bar and "Validation" not in bar and "DataLoader" not in bar
    # the evaluation's bars (tqdm, on a terminal only: forced on here) name the held-out stage and count faces;
    # every face drawn (mininterval 0, miniters 1), else a fast last face is skipped by tqdm's 0.1 s throttle
    drawn = {"disable": False, "mininterval": 0, "miniters": 1}
    monkeypatch.setattr(ice_exp.run.evaluation, "tqdm", lambda *a, **k: tqdm(*a, **{**k, **drawn}))
    problem = Problem.of(grams, setup.terms, setup.generator, setup.space)
    score(setup.generator, setup.terms, setup.space, problem, EarlyProjection()(problem), setup.z_eval, setup.truth)
    bars = capfd.readouterr().err
    assert "evaluating held-out faces" in bars and "ground truth: local truths" in bars and "2/2" in bars


def test_a_training_bar_counts_every_optimizer_step_under_its_name(capfd):
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from ice_exp.common.progress import StepsBar

    class Quadratic(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)

    bar = StepsBar("training the quadratic", disable=False)
    trainer = pl.Trainer(max_steps=7, max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[bar])
    trainer.fit(Quadratic(), DataLoader(TensorDataset(torch.randn(12, 2)), batch_size=4))  # 3 steps an epoch
    assert (bar.bar.total, bar.bar.n) == (7, 7)  # one bar across the epochs, not one per epoch
    assert "training the quadratic" in capfd.readouterr().err


def test_the_bars_are_off_in_the_jobs_of_a_parallel_sweep():
    """Jobs side by side (joblib, submitit) would draw their bars over each other on one line: off there; a
    single run and the basic launcher's jobs in turn keep them (on a terminal: tqdm's None)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from ice_exp.common.progress import bar_disable
    from ice_exp.config import CONF_DIR

    def disable(launcher: str, mode: RunMode) -> bool | None:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.mode = mode
        HydraConfig.instance().set_config(cfg)
        return bar_disable()

    try:
        HydraConfig.instance().cfg = None
        assert bar_disable() is None  # no Hydra: a script or a test
        assert disable("basic", RunMode.MULTIRUN) is None and disable("local_parallel", RunMode.RUN) is None
        assert disable("local_parallel", RunMode.MULTIRUN) is True and disable("submitit_local", RunMode.MULTIRUN) is True
    finally:
        HydraConfig.instance().cfg = None

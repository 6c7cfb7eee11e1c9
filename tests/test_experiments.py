"""Every toyface experiment composes, runs at a small size and meets the ground-truth bars."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ice_exp.config.task import true_groups
from ice_exp.counterfactual.figures import HEADER_PX
from ice_exp.run.discovery import run
from tests.conftest import RANDOM_STYLEGAN2, make_config

TOYFACE_TASKS = ["face_boundary", "eye_shape", "eye_photometry", "hair_photometry", "lip_color", "face_color", "mouth_shape"]


# one world per task, drawn at random (no world is special; docs/worlds.md: the world protocol covers many)
WORLDS = dict(zip(TOYFACE_TASKS, torch.randint(1000, 10**6, (len(TOYFACE_TASKS),), generator=torch.Generator().manual_seed(7)).tolist()))


@pytest.mark.parametrize("task", TOYFACE_TASKS)
def test_toyface_experiment_meets_ground_truth_bars(task, tmp_path):
    """The recommended settings meet the bars in a world and sample pool they were not tuned on."""
    cfg = make_config(f"experiment=toyface/{task}", f"generator.seed={WORLDS[task]}", f"samples.seed={WORLDS[task] + 1}")
    metrics = run(cfg, tmp_path)
    assert metrics["gt/dim_found"] == metrics["gt/dim_true"], metrics["solver/sigma"]
    assert metrics["gt/principal_angle_max_deg"] < 10
    assert metrics["gt/purity_mean"] > 0.9
    assert metrics["gt/pass"] == 1
    assert (tmp_path / "subspace.safetensors").is_file() and (tmp_path / "directions.png").is_file()


def test_the_tiers_sweep_three_columns_and_the_consensus_column_is_the_recommended_recipe_on_16_faces():
    """`ice-exp -cn tiers -m generator.curvature=...`: seed, recommended and consensus columns; a consensus
    experiment differs from the recommended one in its solver and samples only."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ice_exp.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        tiers = compose("tiers", overrides=["generator.curvature=0.3"], return_hydra_config=True)
        consensus = {t: compose("config", overrides=[f"experiment=toyface/consensus/{t}"]) for t in TOYFACE_TASKS}
        recommended = {t: compose("config", overrides=[f"experiment=toyface/{t}"]) for t in TOYFACE_TASKS}
    columns = [e.strip() for e in tiers.hydra.sweeper.params.experiment.split(",")]
    assert sorted(columns) == sorted(f"toyface/{c}{t}" for c in ("", "seed/", "consensus/") for t in TOYFACE_TASKS)
    assert tiers.generator.curvature == 0.3 and "curvature0.3" in tiers.hydra.sweep.dir
    for task in TOYFACE_TASKS:
        a, b = (OmegaConf.to_container(c, resolve=True) for c in (consensus[task], recommended[task]))
        assert a["solver"]["_target_"].endswith("Consensus") and a["samples"]["indices"] == list(range(16))
        assert a["settings"] == "consensus" and a["criteria"] == b["criteria"]


def test_world_protocol_sweeps_both_settings_over_worlds_and_pools():
    """`ice-exp -cn worlds -m`: the seven tasks with the seed's and the recommended settings, 10 worlds x 2 pools."""
    from hydra import compose, initialize_config_dir

    from ice_exp.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("worlds", return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    experiments = [e.strip() for e in params.experiment.split(",")]
    assert sorted(experiments) == sorted([f"toyface/{t}" for t in TOYFACE_TASKS] + [f"toyface/seed/{t}" for t in TOYFACE_TASKS])
    assert params["generator.seed"] == "range(10,20)" and params["samples.seed"] == "8,9"
    assert cfg.counterfactual.enabled is False and cfg.logger is None
    for name in experiments:  # each job's config: the experiment's settings label and its samples
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            job = compose("worlds", overrides=[f"experiment={name}"])
        assert job.settings == ("seed" if "/seed/" in name else "recommended")


STYLEGAN2_EXPERIMENTS = TOYFACE_TASKS + ["spaces", "fig2_face_boundary", "fig3_gallery", "fig4_counterfactual", "spectrum"]
RANDOM_WORLD = [*RANDOM_STYLEGAN2, "trainer=cpu"]


@pytest.mark.parametrize("name", STYLEGAN2_EXPERIMENTS)
def test_stylegan2_experiment_fails_fast_without_weights(name, tmp_path, monkeypatch):
    """Composes with the real analyzers and stops before any compute, naming the missing file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached weights anywhere
    cfg = make_config(f"experiment=stylegan2/{name}")
    assert cfg.generator.path == "weights/stylegan2-ffhq-config-f.pkl" and cfg.space == "s"
    with pytest.raises(Exception) as err:
        run(cfg, tmp_path)
    message = f"{err.value} {err.value.__cause__}"
    assert "not found" in message and ("parsing_bisenet.pth" in message or "stylegan2-ffhq-config-f.pkl" in message)


@pytest.mark.parametrize("criteria", ["face_boundary"])
def test_stylegan2_experiment_runs_with_random_weights(criteria, tmp_path):
    """The seed's heaviest task (landmarks + landmark texture) on the real code path at a tiny size."""
    cfg = make_config("experiment=stylegan2/face_boundary", f"criteria={criteria}", *RANDOM_WORLD,
                      "samples.indices=[0]", "samples.eval_num=0")
    metrics = run(cfg, tmp_path)
    directions = load_file(str(tmp_path / "subspace.safetensors"))["directions"].double()
    assert directions.shape[1] == metrics["solver/num_directions"] == len(metrics["solver/sigma"])
    assert torch.allclose(directions.T @ directions, torch.eye(directions.shape[1], dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("task", TOYFACE_TASKS)
def test_the_stylegan2_consensus_recipe_is_the_toyface_one_on_the_real_models(task, tmp_path, monkeypatch):
    """Same criteria and solver as experiments/configs/toyface/consensus/<task>; real generator and analyzers, which stop
    the run at once without their weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cfg, toy = make_config(f"experiment=stylegan2/consensus/{task}"), make_config(f"experiment=toyface/consensus/{task}")
    assert cfg.criteria == toy.criteria and cfg.solver == toy.solver and cfg.samples.indices == toy.samples.indices
    assert cfg.generator.path == "weights/stylegan2-ffhq-config-f.pkl" and cfg.space == "s"
    with pytest.raises(Exception, match="not found"):
        run(cfg, tmp_path)


def test_the_stylegan2_consensus_recipe_runs_with_random_weights(tmp_path):
    cfg = make_config("experiment=stylegan2/consensus/face_boundary", *RANDOM_WORLD, "samples.indices=[0,1]",
                      "samples.eval_num=0")
    metrics = run(cfg, tmp_path)
    assert 0 < metrics["trust/agreement"] <= 1 and metrics["solver/num_directions"] == len(metrics["solver/sigma"])


def test_stylegan2_counterfactual_stage_runs_with_a_celeba_checkpoint(tmp_path):
    """Discovery, then the CelebA 40-head explanation, on random weights in the published layouts."""
    from ice_exp.counterfactual.classifiers import CelebAAttrResNet50

    model = CelebAAttrResNet50().eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "model_best.pth.tar")
    cfg = make_config("experiment=stylegan2/face_boundary", "criteria=face_boundary_landmarks", *RANDOM_WORLD,
                      "samples.indices=[0]", "samples.eval_num=0",
                      "counterfactual.enabled=true", f"classifier.path={tmp_path}", "counterfactual.num_samples=2",
                      "counterfactual.iterations=2", "counterfactual.grid_samples=2", "counterfactual.tile=32")
    metrics = run(cfg, tmp_path)
    table = pd.read_csv(tmp_path / "counterfactual" / "table.csv")
    assert table["subspace"].tolist() == ["face_boundary"] and len(pd.read_csv(tmp_path / "counterfactual" / "samples.csv")) == 2
    assert metrics["counterfactual/flip_rate"] == pytest.approx(table["flip_rate"][0], nan_ok=True)


@pytest.mark.parametrize("name", ["spaces", "fig2_face_boundary", "fig3_gallery", "spectrum"])
def test_toyface_figure_experiments_compose_and_run_one_job(name, tmp_path):
    """The figure experiments are sweeps (`-m`); without -m each runs its first configuration."""
    cfg = make_config(f"experiment=toyface/{name}", "generator.resolution=48", "samples.eval_num=1")
    metrics = run(cfg, tmp_path)
    assert metrics["gt/dim_true"] == len(true_groups()[cfg.criteria.task.name])
    found = metrics["solver/num_directions"]
    rows, cols = (min(found, cfg.viz.directions), len(cfg.viz.steps)) if found else (1, 1)  # none: the face alone
    assert Image.open(tmp_path / "directions.png").size == (cols * 50 + 2, rows * 50 + 2)  # 48-px faces, 2-px gaps


def test_toyface_fig4_runs_discovery_and_explanation(tmp_path):
    tiny_classifier = ["classifier.resolution=32", "classifier.train.samples=256", "classifier.train.held_out=64",
                       "classifier.train.epochs=1", f"classifier.cache_dir={tmp_path / 'cache'}"]  # runs, not accurate
    cfg = make_config("experiment=toyface/fig4_counterfactual", "generator.resolution=48", "samples.eval_num=1",
                      "counterfactual.enabled=true", "counterfactual.iterations=3", "counterfactual.tile=32", *tiny_classifier)
    metrics = run(cfg, tmp_path)
    table = pd.read_csv(tmp_path / "counterfactual" / "table.csv")
    assert metrics["counterfactual/flip_rate"] == pytest.approx(table["flip_rate"][0], nan_ok=True)
    width, height = Image.open(tmp_path / "counterfactual" / "grid.png").size  # the original, then each subspace
    assert (width, height) == ((1 + len(table)) * 34, HEADER_PX + cfg.counterfactual.grid_samples * 34)  # 32-px tiles

"""Sweeps (`ice-exp -m`) with the basic, joblib and submitit_local launchers, failure recording, and ice-report.

The sweeps run as subprocesses, exactly as a user types them, at a tiny size (toyface 32 px, one evaluation
sample). A job is forced to fail at run time by a test-only config on the search path: the lip_color criteria
with the activate term on the hat region, which toyface never draws (check_nonempty raises inside that job).
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

from hydra_plugins.ice_exp_launchers.slurm import job_name
from ice_exp.apps.discover import main as cli_main
from ice_exp.apps.report import main as report
from ice_exp.common.tables import latex_escape
from ice_exp.config import CONF_DIR
from ice_exp.run.report_table import flatten
from ice_exp.run.sweeps import FailureSummary, sweep_label, sweep_outcome
from ice_exp.run.tracking import artifact_name, close, default_group, make_logger, sweep_overrides, swept, swept_overrides
from tests.conftest import table_rows

REPO = Path(CONF_DIR).parent
# a sweep job as the CLI runs it here: no logger, no bars, one held-out face, no explanation
QUIET_JOB = ["logger=none", "samples.eval_num=1", "trainer.enable_progress_bar=false", "counterfactual.enabled=false"]
TOYFACE_TASKS = ["face_boundary", "eye_shape", "eye_photometry", "hair_photometry", "lip_color", "face_color", "mouth_shape"]
SOLVERS = {"early_projection": "EarlyProjection", "late_projection": "LateProjection"}
EMPTY_REGION = "lip_color's activate term on the hat region, which toyface never draws: check_nonempty fails at run time"
TEST_CONFIGS = {
    "criteria/empty_region.yaml": f"# test only: {EMPTY_REGION}\ndefaults:\n  - lip_color\n  - _self_\n"
                                  "name: empty_region\nactivate:\n  criterion: {regions: [hat]}\n",
    "experiment/test/empty_region.yaml": f"# @package _global_\n# test only: {EMPTY_REGION}\n"
                                         "defaults:\n  - override /criteria: empty_region\n",
}


@pytest.fixture(scope="module")
def test_conf(tmp_path_factory) -> Path:
    """A config dir added with hydra.searchpath: criteria=empty_region, experiment=test/empty_region."""
    root = tmp_path_factory.mktemp("conf")
    for name, text in TEST_CONFIGS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def ice_exp(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([sys.executable, "-m", "ice_exp", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_comparison_sweep_keeps_the_run_protocol(tmp_path):
    """ice-compare -m: each job's folder has a run's records (config_resolved.yaml, run_info.json with its status,
    versions), a job with a bad value its failure.json while the other jobs go on, and the sweep counts
    both and exits 1, as ice-exp's do."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "ice_exp.apps.compare", "-m", *QUIET_JOB, "generator.resolution=32",
                           "samples.indices=[0],[99]", "compare.solvers=[early_projection]", "engine.cache_dir=null",
                           f"hydra.sweep.dir={out}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"sweep {out}: 2 jobs, 1 finished, 1 failed or unfinished" in proc.stderr
    done, bad = out / "0_mouth_shape", out / "1_mouth_shape"
    info = json.loads((done / "run_info.json").read_text())
    assert info["status"] == "completed" and "torch" in info["versions"] and (done / "config_resolved.yaml").is_file()
    assert (done / "compare.md").is_file() and not (done / "failure.json").exists()
    failure = json.loads((bad / "failure.json").read_text())
    assert failure["error_type"] == "ConfigError" and "samples.indices" in failure["message"]


def sweep(out: Path, test_conf: Path, *overrides: str, jobs: int, failed: int) -> Path:
    """Run the sweep; it exits non-zero when a job failed, with one summary line naming the counts."""
    proc = ice_exp("-m", *QUIET_JOB, f"hydra.sweep.dir={out}", f"hydra.searchpath=[file://{test_conf}]", *overrides)
    assert proc.returncode == (1 if failed else 0), proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = f"sweep {out}: {jobs} jobs, {jobs - failed} finished, {failed} failed or unfinished"
    assert summary in proc.stderr.splitlines()[-1], proc.stderr[-2000:]
    assert not failed or "failure.json" in proc.stderr.splitlines()[-1]
    return out


def run_dirs(root: Path) -> dict[str, list[Path]]:
    """Job folders of a sweep by outcome."""
    jobs = [p.parent for p in root.rglob("config_resolved.yaml")]
    return {"finished": [j for j in jobs if (j / "metrics.json").is_file()],
            "failed": [j for j in jobs if (j / "failure.json").is_file()]}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_table_matches_runs(out: Path, finished: list[Path], rows: str = "criteria.name", col: str = "solver") -> None:
    """report.csv has one line per finished run (one run per cell) whose means equal the run's metrics.json."""
    cells = {(r[rows], r[col]): r for r in read_csv(out / "report.csv") if r["n"] != "0"}
    assert len(cells) == len(finished)
    for job in finished:
        config = flatten(yaml.safe_load((job / "config_resolved.yaml").read_text()))
        metrics = json.loads((job / "metrics.json").read_text())
        cell = cells[str(config[rows]), str(config[col])]
        assert cell["n"] == "1" and cell["failed"] == "0"
        for key in ("gt/principal_angle_max_deg", "gt/purity_mean", "gt/dim_found", "eval/gain", "time/discovery_s"):
            got, expected = float(cell[f"{key} mean"]), float(metrics[key])  # NaN: no direction found (e.g. purity)
            assert got == expected or (math.isnan(got) and math.isnan(expected)), (job, key)


def assert_failures_listed(out: Path, failed: list[Path], markdown: str) -> None:
    listed = read_csv(out / "failures.csv")
    assert sorted(r["run"] for r in listed) == sorted(str(j.relative_to(out)) for j in failed)
    assert all(r["error_type"] == "EmptyMask" and "mask is empty" in r["message"] for r in listed)
    assert "## Failures" in markdown and all(str(j.relative_to(out)) in markdown for j in failed)
    for job in failed:
        failure = json.loads((job / "failure.json").read_text())
        assert "check_nonempty" in failure["traceback"] and any("empty_region" in o for o in failure["overrides"])


# ---------------------------------------------------------------- launcher configs

@pytest.mark.parametrize("launcher, target, keys", [
    ("slurm", "ice_exp_launchers.slurm.SlurmLauncher", {"partition": None, "gpus_per_node": None, "tasks_per_node": 1, "nodes": 1,
                                          "cpus_per_task": 8, "mem_gb": 32, "timeout_min": 60, "name": "ice-exp"}),
    ("slurm_array", "submitit_launcher.SlurmLauncher", {"gpus_per_node": None, "cpus_per_task": 8, "array_parallelism": 16,
                                                        "name": "ice-exp"}),
    ("local_parallel", "JoblibLauncher", {"n_jobs": 2}),
    ("joblib", "JoblibLauncher", {}),
    ("submitit_local", "LocalLauncher", {}),
])
def test_launcher_configs_compose(launcher, target, keys):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert {k: cfg.hydra.launcher[k] for k in keys} == keys


# ---------------------------------------------------------------- sweeps

def test_basic_sweep_over_criteria_gives_the_table_and_records_the_failure(tmp_path, test_conf, capsys):
    out = sweep(tmp_path / "sweep", test_conf, "generator.resolution=32",
                "criteria=eye_photometry,mouth_shape_pixels,empty_region", jobs=3, failed=1)
    jobs = run_dirs(out)
    assert len(jobs["finished"]) == 2 and len(jobs["failed"]) == 1
    assert report([str(out)]) == 0
    markdown = capsys.readouterr().out
    assert (out / "report.md").read_text().strip() == markdown.strip() and (out / "report.tex").is_file()
    purity = table_rows(markdown.split("## gt/purity_mean")[1].split("##")[0])
    assert purity[0] == ["criteria.name", "EarlyProjection"]
    # in sweep order; mouth_shape is mouth_shape_pixels' name
    assert [row[0] for row in purity] == ["criteria.name", "eye_photometry", "mouth_shape", "empty_region"]
    assert_table_matches_runs(out, jobs["finished"])
    assert_failures_listed(out, jobs["failed"], markdown)


@pytest.fixture
def hydra_job(tmp_path):
    """A composed job config with HydraConfig set as a launcher sets it (mode, output dir, job number)."""
    def make(mode: RunMode, *overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=QUIET_JOB + list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.mode, cfg.hydra.runtime.output_dir, cfg.hydra.job.num = mode, str(tmp_path / "job"), 3
        HydraConfig.instance().set_config(cfg)
        task = cfg.copy()
        with open_dict(task):
            del task["hydra"]
        return task

    yield make
    HydraConfig.instance().cfg = None


def test_failing_job_is_recorded_in_a_multirun_and_raises_in_a_single_run(hydra_job, tmp_path):
    job = tmp_path / "job"
    with pytest.raises(ValueError, match="samples.indices"):
        cli_main(hydra_job(RunMode.RUN, "samples.indices=[999]"))
    assert not (job / "failure.json").exists()
    assert cli_main(hydra_job(RunMode.MULTIRUN, "samples.indices=[999]")) is None  # returns: the sweep goes on
    failure = json.loads((job / "failure.json").read_text())
    assert failure["error_type"] == "ConfigError" and "samples.indices" in failure["message"]
    assert "check_config" in failure["traceback"] and "samples.indices=[999]" in failure["overrides"] and failure["job_num"] == 3
    # the run died before writing its config: the failure writes it, so that ice-report can place the job
    assert yaml.safe_load((job / "config_resolved.yaml").read_text())["samples"]["indices"] == [999]


def test_a_job_returns_its_optimized_metric_to_the_sweeper(hydra_job, tmp_path):
    """optimized_metric names the metrics.json value a job hands to the sweeper (an Optuna sweep's objective)."""
    returned = cli_main(hydra_job(RunMode.MULTIRUN, "optimized_metric=gt/purity_mean", "logger=none",
                                  "counterfactual.enabled=false", "samples.eval_num=1"))
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert returned == metrics["gt/purity_mean"] != metrics["gt/principal_angle_max_deg"]
    assert cli_main(hydra_job(RunMode.MULTIRUN, "optimized_metric=null", "logger=none", "counterfactual.enabled=false",
                              "samples.eval_num=1")) is None


def grid(out: Path, test_conf: Path, launcher: list[str], tasks: list[str], resolution: int) -> None:
    """The toyface experiments (plus the failing one) × two ICE solvers with a launcher; the report has
    every finished job in its cell and lists the failed ones."""
    experiments = ",".join([f"toyface/{t}" for t in tasks] + ["test/empty_region"])
    sweep(out, test_conf, *launcher, f"generator.resolution={resolution}", f"experiment={experiments}",
          f"solver={','.join(SOLVERS)}", jobs=2 * len(tasks) + 2, failed=2)
    jobs = run_dirs(out)
    assert len(jobs["finished"]) == 2 * len(tasks) and len(jobs["failed"]) == 2
    assert main_report(out) == 0
    markdown = (out / "report.md").read_text()
    assert ["criteria.name", *SOLVERS.values()] in table_rows(markdown)
    assert_table_matches_runs(out, jobs["finished"])
    assert_failures_listed(out, jobs["failed"], markdown)
    assert f"{2 * len(tasks) + 2} runs ({2 * len(tasks)} finished, 2 failed)" in markdown


def main_report(out: Path) -> int:
    return subprocess.run([sys.executable, "-m", "ice_exp.apps.report", str(out)], cwd=REPO, capture_output=True, text=True).returncode


# two jobs at a time on the test machine's two cores: joblib's n_jobs; submitit_local starts every job of a batch
# at once, so the sweeper's batches are cut to two
LAUNCHERS = {"joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
             "submitit_local": ["hydra/launcher=submitit_local", "hydra.sweeper.max_batch_size=2"]}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_toyface_grid_small(launcher, tmp_path, test_conf):
    grid(tmp_path / "sweep", test_conf, LAUNCHERS[launcher], ["eye_photometry"], 32)  # 2 × 2: one task and the failing one


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_toyface_grid_seven_subspaces_two_solvers(launcher, tmp_path, test_conf):
    grid(tmp_path / "sweep", test_conf, LAUNCHERS[launcher], TOYFACE_TASKS, 48)  # lip_color's lips vanish at 32 px


# ---------------------------------------------------------------- ice-report on hand-made run folders

def make_run(path: Path, criteria: str, solver: str, seed: int, metrics: dict | None = None, failure: dict | None = None) -> None:
    path.mkdir(parents=True)
    config = {"criteria": {"name": criteria, "activate": {"criterion": {"regions": ["lips"]}}},
              "solver": {"_target_": f"ice_exp.solvers.ice.{solver}", "rho": 0.01}, "space": "s", "seed": seed,
              "samples": {"seed": 8, "indices": [0, 1]}, "analyzer": {"identity": {}}}
    (path / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    if failure is not None:
        (path / "failure.json").write_text(json.dumps(failure))


def metric_values(criteria: str, solver: str, seed: int) -> dict:
    base = {"eye_shape": 1.0, "lip_color": 7.0}[criteria] + {"EarlyProjection": 0.0, "LateProjection": 100.0}[solver]
    return {"gt/principal_angle_max_deg": base + seed ** 2, "gt/purity_mean": 0.9 + 0.01 * seed, "gt/dim_found": 3,
            "eval/gain": 10.0 * seed, "time/discovery_s": 1.5, "solver/sigma": [1.0, 0.5]}


@pytest.fixture
def hand_made(tmp_path) -> Path:
    """eye_shape, lip_color × EarlyProjection, LateProjection × seeds 0, 1, 2; one failed and one unfinished run."""
    root = tmp_path / "sweep"
    i = 0
    for criteria in ("eye_shape", "lip_color"):
        for solver in ("EarlyProjection", "LateProjection"):
            for seed in (0, 1, 2):
                make_run(root / f"{i}_job", criteria, solver, seed, metric_values(criteria, solver, seed))
                i += 1
    make_run(root / "nested" / "12_job", "face_color", "EarlyProjection", 0,
             failure={"error_type": "ValueError", "message": "masked_pixels regions=['hat']: mask is empty", "overrides": ["seed=0"]})
    make_run(root / "13_job", "face_color", "LateProjection", 0)  # neither metrics.json nor failure.json
    return root


def test_flatten_dotted_keys_and_short_targets():
    flat = flatten({"solver": {"_target_": "ice_exp.solvers.ice.LateProjection", "rho": 0.1}, "samples": {"indices": [0, 1]},
                    "analyzer": {"identity": {}}, "seed": 3})
    assert flat == {"solver._target_": "LateProjection", "solver": "LateProjection", "solver.rho": 0.1,
                    "samples.indices": "[0,1]", "analyzer.identity": "{}", "seed": 3}


def test_report_mean_std_over_seeds_and_grouping(hand_made, capsys):
    out = hand_made / "report"
    assert report([str(hand_made), "--out", str(out)]) == 0
    markdown = capsys.readouterr().out
    cells = {(r["criteria.name"], r["solver"]): r for r in read_csv(out / "report.csv")}
    assert set(cells) == {(c, s) for c in ("eye_shape", "lip_color", "face_color") for s in ("EarlyProjection", "LateProjection")}
    for criteria in ("eye_shape", "lip_color"):
        for solver in ("EarlyProjection", "LateProjection"):
            cell = cells[criteria, solver]
            assert (cell["n"], cell["failed"]) == ("3", "0")
            for key in ("gt/principal_angle_max_deg", "gt/purity_mean", "eval/gain"):
                values = [metric_values(criteria, solver, s)[key] for s in (0, 1, 2)]
                assert float(cell[f"{key} mean"]) == pytest.approx(statistics.mean(values))
                assert float(cell[f"{key} std"]) == pytest.approx(statistics.stdev(values))
    assert (cells["face_color", "EarlyProjection"]["n"], cells["face_color", "EarlyProjection"]["failed"]) == ("0", "1")
    # angle of eye_shape / LateProjection over seeds 0, 1, 2: 101, 102, 105 -> 102.667 ± 2.082
    angle = markdown.split("## gt/principal_angle_max_deg")[1].split("##")[0]
    assert ["eye_shape", "2.67 ± 2.08", "103 ± 2.08"] in table_rows(angle) and ["face_color", "failed", "failed"] in table_rows(angle)
    assert "mean ± std over 3 run(s) per cell, varying: seed" in markdown
    failures = {row[0]: row[1:] for row in table_rows(markdown.split("## Failures")[1])}
    assert failures["nested/12_job"] == ["failed", "ValueError: masked_pixels regions=['hat']: mask is empty"]
    assert failures["13_job"][0] == "unfinished" and failures["13_job"][1].startswith("Unfinished: ")
    assert {r["run"] for r in read_csv(out / "failures.csv")} == {"nested/12_job", "13_job"}
    assert {r["status"] for r in read_csv(out / "runs.csv")} == {"completed", "failed", "unfinished"}
    assert len(read_csv(out / "runs.csv")) == 14


def test_the_sweep_exit_status_and_the_report_read_a_run_alike(hand_made, capsys):
    """One reader (records.read_status): a job with no record (13_job) fails the sweep as the report lists it."""
    out = hand_made / "report"
    assert report([str(hand_made), "--out", str(out)]) == 0
    statuses = [r["status"] for r in read_csv(out / "runs.csv")]
    assert sweep_outcome(hand_made) == (len(statuses), statuses.count("completed"), len(statuses) - statuses.count("completed"))
    assert statuses.count("unfinished") == 1 and len(statuses) - statuses.count("completed") == 2


@pytest.mark.parametrize("status, error, shown", [
    ("failed:explain", "CheckpointError: classifier: cannot load w.pt", "failed:explain: CheckpointError"),
    ("running", None, "running: stopped before the end"),  # killed after its first metrics.json
])
def test_report_counts_a_run_whose_status_is_not_completed_as_failed(hand_made, status, error, shown, capsys):
    make_run(hand_made / "14_job", "eye_shape", "EarlyProjection", 3,
             {**metric_values("eye_shape", "EarlyProjection", 0), "status": status, "error": error})
    out = hand_made / "report"
    assert report([str(hand_made), "--out", str(out)]) == 0
    markdown = capsys.readouterr().out
    assert "15 runs (12 finished, 3 failed)" in markdown
    assert f"status: completed 12, failed 1, {status} 1, unfinished 1" in markdown.splitlines()
    (status_cell, error_cell), = [row[1:] for row in table_rows(markdown.split("## Failures")[1]) if row[0] == "14_job"]
    assert status_cell == status and error_cell.startswith(shown)
    cell = {(r["criteria.name"], r["solver"]): r for r in read_csv(out / "report.csv")}["eye_shape", "EarlyProjection"]
    assert (cell["n"], cell["failed"]) == ("3", "1")  # its metrics stay out of the means
    assert {r["run"]: r["status"] for r in read_csv(out / "runs.csv")}["14_job"] == status


def test_report_median_and_range_over_worlds(hand_made, capsys):
    """--stat median: each cell is median [min, max], so the worst world shows; report.csv has every statistic."""
    out = hand_made / "median"
    assert report([str(hand_made), "--out", str(out), "--stat", "median", "--format", "md,csv"]) == 0
    markdown = capsys.readouterr().out
    # angle of eye_shape / LateProjection over seeds 0, 1, 2: 101, 102, 105
    assert ["eye_shape", "2 [1, 5]", "102 [101, 105]"] in table_rows(markdown)
    assert "median [min, max] over 3 run(s) per cell" in markdown
    cell = next(r for r in read_csv(out / "report.csv") if (r["criteria.name"], r["solver"]) == ("lip_color", "EarlyProjection"))
    assert [float(cell[f"gt/principal_angle_max_deg {s}"]) for s in ("median", "min", "max")] == [8.0, 7.0, 11.0]


def test_report_rate_of_a_0_1_metric_and_nan_left_out(tmp_path, capsys):
    """--stat median: a 0/1 metric shows k/n; a NaN value is left out of the statistics, its run still counts."""
    for seed, (passed, purity) in enumerate([(1.0, 0.5), (0.0, math.nan), (1.0, 0.8)]):
        make_run(tmp_path / f"{seed}_job", "eye_shape", "EarlyProjection", seed, {"gt/pass": passed, "gt/purity_mean": purity})
    assert report([str(tmp_path), "--cols", "none", "--metrics", "gt/pass,gt/purity_mean", "--stat", "median"]) == 0
    assert table_rows(capsys.readouterr().out)[1] == ["eye_shape", "2/3", "0.65 [0.5, 0.8]"]
    (cell,) = read_csv(tmp_path / "report.csv")
    assert cell["n"] == "3" and float(cell["gt/purity_mean mean"]) == pytest.approx(0.65)


def test_report_shows_a_count_metric_that_is_one_in_one_cell_as_a_value_not_a_rate(tmp_path, capsys):
    """gt/dim_found is 1 in every lip_color run and 3 elsewhere: a count, shown as its median, never "2/2"."""
    for i, (criteria, dims) in enumerate([("lip_color", 1.0), ("lip_color", 1.0), ("eye_shape", 3.0), ("eye_shape", 3.0)]):
        make_run(tmp_path / f"{i}_job", criteria, "EarlyProjection", i, {"gt/pass": 1.0, "gt/dim_found": dims})
    assert report([str(tmp_path), "--cols", "none", "--metrics", "gt/pass,gt/dim_found", "--stat", "median"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert ["lip_color", "2/2", "1 [1, 1]"] in rows and ["eye_shape", "2/2", "3 [3, 3]"] in rows
    report([str(tmp_path / "0_job"), "--cols", "none", "--metrics", "gt/pass"])
    assert capsys.readouterr().out.count("1 run (1 finished, 0 failed)") == 1  # one run, said in the singular


def test_report_sweep_order_headers_single_runs_empty_subspaces_and_where_it_wrote(tmp_path, capsys):
    """Rows and columns in job order (10 after 2, not alphabetical), numeric column values with their key,
    one run's value without a std, no angle for an empty subspace, the default metrics that exist, and the
    files it wrote named on stderr; a run folder given directly keeps its name in runs.csv."""
    full = {"gt/pass": 1, "gt/dim_found": 3, "gt/principal_angle_max_deg": 2.0, "counterfactual/flip_rate": 0.5}
    for i, (criteria, seed) in enumerate([("lip_color", 2), ("eye_shape", 10)] + [("lip_color", s) for s in range(3, 12)]):
        metrics = {**full, "gt/dim_found": 0, "gt/principal_angle_max_deg": 90.0} if i == 1 else full
        make_run(tmp_path / "sweep" / f"{i}_job", criteria, "EarlyProjection", seed, metrics)
    assert report([str(tmp_path / "sweep"), "--cols", "seed", "--format", "md,csv"]) == 0
    out, err = capsys.readouterr()
    angle = table_rows(out.split("## gt/principal_angle_max_deg")[1].split("##")[0])
    assert angle[0] == ["criteria.name", "seed=2", "seed=10", *(f"seed={s}" for s in (3, 4, 5, 6, 7, 8, 9, 11))]
    assert [row[0] for row in angle[1:]] == ["lip_color", "eye_shape"] and angle[2][2] == "–"  # empty: no angle
    assert "## gt/pass" in out and "## counterfactual/flip_rate" in out and "## eval/gain" not in out
    cell = {(r["criteria.name"], r["seed"]): r for r in read_csv(tmp_path / "sweep" / "report.csv")}[("lip_color", "2")]
    assert float(cell["gt/pass mean"]) == 1 and cell["gt/pass std"] == ""  # one run: no spread to report
    assert f"ice-report: wrote report.md, report.csv, runs.csv, failures.csv to {tmp_path / 'sweep'}" in err
    assert report([str(tmp_path / "sweep" / "0_job"), "--format", "csv"]) == 0
    assert [r["run"] for r in read_csv(tmp_path / "sweep" / "0_job" / "runs.csv")] == ["0_job"]


def test_sweep_end_prints_the_headline_table_in_job_order_and_points_to_ice_report(tmp_path, capsys):
    root = tmp_path / "sweep"
    for job, seed in [(0, 0), (10, 2), (2, 1)]:
        make_run(root / f"{job}_eye_shape", "eye_shape", "EarlyProjection", seed, {"gt/pass": 1, "eval/gain": 10.0 + seed})
        (root / f"{job}_eye_shape" / ".hydra").mkdir()
        (root / f"{job}_eye_shape" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["space=s", f"seed={seed}"]))
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["space=s", "seed=0,1,2"]}}}))
    FailureSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(root)}}}))
    err = capsys.readouterr().err
    assert table_rows(err) == [["job", "status", "gt/pass", "eval/gain"], ["0_eye_shape seed=0", "completed", "1", "10"],
                               ["2_eye_shape seed=1", "completed", "1", "11"], ["10_eye_shape seed=2", "completed", "1", "12"]]
    assert err.splitlines()[-1] == f"sweep {root}: 3 jobs, 3 finished, 0 failed or unfinished (table: ice-report {root})"


def slurm_config(*overrides: str, launcher: str = "slurm") -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=[f"hydra/launcher={launcher}", *overrides], return_hydra_config=True)


@pytest.mark.parametrize("launcher", ["slurm", "slurm_array"])
def test_slurm_launchers_request_what_the_trainer_uses_and_name_the_jobs(launcher):
    def request(*trainer: str) -> tuple:
        settings = OmegaConf.to_container(slurm_config(*trainer, launcher=launcher).hydra.launcher, resolve=True)
        return tuple(settings[k] for k in ("gpus_per_node", "tasks_per_node", "nodes"))

    assert request("trainer=cpu") == (None, 1, 1) and request("trainer=gpu") == (1, 1, 1)
    assert request("trainer=ddp_cpu") == (None, 2, 1)  # two CPU processes: two tasks, no GPU
    assert request("trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2") == (4, 4, 2)  # a task per GPU, per node
    with pytest.raises(InterpolationResolutionError, match="trainer.devices=-1"):  # ddp: every GPU, unknown count
        request("trainer=ddp")
    assert sweep_label(["samples.indices=[0,1]", "criteria=eye_shape,lip_color", "seed=range(3)"]) == \
        "ice-exp criteria=eye_shape,lip_color seed=range(3)"
    assert job_name("ice-exp", 3, ["samples.indices=[0,1]", "criteria=lip_color", "seed=1"],
                    ["samples.indices=[0,1]", "criteria=eye_shape,lip_color", "seed=range(3)"]) == "ice-exp#3 criteria=lip_color seed=1"


def test_what_a_sweep_varies_in_its_config_names_its_jobs_too(tmp_path):
    """-cn worlds sweeps through hydra.sweeper.params, not the command line: its jobs' names (W&B runs, the
    headline table, SLURM jobs) and the array's name say what those vary as well."""
    params = {"experiment": "toyface/eye_shape, toyface/lip_color", "generator.seed": "range(10,20)", "samples.seed": "8"}
    assert sweep_overrides(["logger=none", "seed=0,1"], params) == \
        ["seed=0,1", "experiment=toyface/eye_shape, toyface/lip_color", "generator.seed=range(10,20)"]
    assert sweep_overrides(["experiment=toyface/mouth_shape", "generator.seed=3"], params) == []  # the command line wins
    assert sweep_label(["logger=none"], params) == "ice-exp experiment=toyface/eye_shape, toyface/lip_color generator.seed=range(10,20)"
    job = ["logger=none", "experiment=toyface/lip_color", "generator.seed=12", "samples.seed=8"]
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["logger=none"]},
                                                                      "sweeper": {"params": params}}}))
    assert swept(job, tmp_path) == ["experiment=toyface/lip_color", "generator.seed=12"]
    assert job_name("ice-exp", 5, job, sweep_overrides(["logger=none"], params)) == \
        "ice-exp#5 experiment=toyface/lip_color generator.seed=12"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        worlds = compose("worlds", overrides=["hydra/launcher=slurm_array"], return_hydra_config=True)
    assert OmegaConf.to_container(worlds.hydra.launcher, resolve=True)["name"].startswith(
        "ice-exp experiment=toyface/seed/face_boundary,toyface/seed/eye_shape,")


STAND_IN_SACCT = """\
import os, re, subprocess, sys
from pathlib import Path

print("JobID|State|NodeList")
for flag, job in zip(sys.argv[1:], sys.argv[2:]):
    if flag != "-j":
        continue
    folder = Path(os.environ["STAND_IN_SWEEP"]) / ".submitit" / job
    if not (folder / f"{job}_0_result.pkl").exists():  # not run yet: every task of the job, side by side
        tasks = int(re.search(r"--ntasks-per-node=(\\d+)", (folder / f"{job}_submission.sh").read_text())[1])
        env = {**os.environ, "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": job, "SLURM_JOB_NAME": "ice-exp",
               "SLURM_NTASKS": str(tasks), "SLURM_NTASKS_PER_NODE": str(tasks), "SLURM_NNODES": "1", "SLURM_NODEID": "0",
               "SLURM_JOB_NODELIST": "localhost", "SLURM_NODELIST": "localhost"}
        runs = [subprocess.Popen([sys.executable, "-u", "-m", "submitit.core._submit", str(folder)],
                                 env={**env, "SLURM_PROCID": str(t), "SLURM_LOCALID": str(t)},
                                 stdout=open(folder / f"{job}_{t}_log.out", "w"), stderr=subprocess.STDOUT) for t in range(tasks)]
        for run in runs:
            run.wait()
    print(f"{job}|COMPLETED|localhost")
"""


def stand_in_slurm(bin_dir: Path, submitted: Path, sweep_dir: Path) -> dict[str, str]:
    """sbatch, srun and sacct for a machine without SLURM, on PATH in the returned environment: sbatch keeps each
    script submitit hands it in ``submitted`` and answers a job id; sacct runs each job it is asked about that has
    not run yet, its script's ``--ntasks-per-node`` tasks side by side as SLURM would start them (submitit's own
    entry point, SLURM's variables), and reports it COMPLETED; srun is never called (submitit only looks for it)."""
    bin_dir.mkdir(), submitted.mkdir()
    tools = {
        "sbatch": f'#!/bin/sh\nn=$(ls {submitted} | wc -l)\ncp "$1" {submitted}/$n.sh\necho "Submitted batch job $((n + 100))"\n',
        "srun": "#!/bin/sh\nexit 1\n",
        "sacct": f"#!{sys.executable}\n{STAND_IN_SACCT}",
    }
    for tool, text in tools.items():
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STAND_IN_SWEEP": str(sweep_dir)}


def sbatch_flags(script: str) -> dict[str, str]:
    return dict(line.removeprefix("#SBATCH --").partition("=")[::2] for line in script.splitlines() if line.startswith("#SBATCH --"))


@pytest.mark.parametrize("trainer, resources", [
    ("cpu", {"cpus-per-task": "8", "mem": "32GB", "ntasks-per-node": "1", "nodes": "1", "time": "60"}),
    ("gpu", {"gpus-per-node": "1", "cpus-per-task": "8", "ntasks-per-node": "1"}),
])
def test_slurm_submits_each_job_under_its_own_name(trainer, resources, tmp_path, monkeypatch):
    """hydra/launcher=slurm's submission: one script per job (no array), each with the job's name and the
    trainer's resources, as a stand-in sbatch receives them."""
    from hydra.utils import instantiate

    submitted = tmp_path / "submitted"
    for key, value in stand_in_slurm(tmp_path / "bin", submitted, tmp_path / "sweep").items():
        monkeypatch.setenv(key, value)
    cfg = slurm_config(f"trainer={trainer}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    with open_dict(cfg):
        cfg.hydra.overrides.task = ["generator.resolution=32", "criteria=eye_shape,lip_color", "seed=0,1"]
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    jobs = [["generator.resolution=32", f"criteria={c}", f"seed={s}"] for c in ("eye_shape", "lip_color") for s in (0, 1)]
    assert [job.job_id for job in launcher.submit(jobs, initial_job_idx=4)] == ["100", "101", "102", "103"]
    flags = [sbatch_flags((submitted / f"{n}.sh").read_text()) for n in range(4)]
    assert [f["job-name"] for f in flags] == ["'ice-exp#4 criteria=eye_shape seed=0'", "'ice-exp#5 criteria=eye_shape seed=1'",
                                               "'ice-exp#6 criteria=lip_color seed=0'", "'ice-exp#7 criteria=lip_color seed=1'"]
    for f in flags:
        assert resources.items() <= f.items() and "array" not in f, f
        assert trainer == "gpu" or not any(key.startswith("gpus") for key in f)


def test_a_slurm_sweep_as_a_user_types_it(tmp_path):
    """``ice-exp -m hydra/launcher=slurm ...`` end to end on the stand-in SLURM: two jobs submitted under their
    own names, each run as a SLURM task, then the sweep's headline table and closing line."""
    out = tmp_path / "sweep"
    env = {**os.environ, **stand_in_slurm(tmp_path / "bin", tmp_path / "submitted", out), "OMP_NUM_THREADS": "1",
           "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "ice_exp", "-m", "hydra/launcher=slurm", *QUIET_JOB, "generator.resolution=32",
                           "samples.indices=[0]", "seed=0,1", f"hydra.sweep.dir={out}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = [sbatch_flags(p.read_text())["job-name"] for p in sorted((tmp_path / "submitted").iterdir())]
    assert names == ["'ice-exp#0 seed=0'", "'ice-exp#1 seed=1'"]
    assert (out / "0_mouth_shape" / "metrics.json").is_file() and (out / "1_mouth_shape" / "metrics.json").is_file()
    assert ["0_mouth_shape seed=0", "completed"] == table_rows(proc.stderr)[1][:2]
    assert proc.stderr.splitlines()[-1] == f"sweep {out}: 2 jobs, 2 finished, 0 failed or unfinished (table: ice-report {out})"


def test_a_slurm_ddp_job_gets_one_task_per_process(tmp_path):
    """trainer=ddp_cpu (two processes) under hydra/launcher=slurm: the job asks for two tasks, SLURM starts
    both, Lightning joins them as one DDP run (with the plugin's default of one task it refuses: devices=2 but
    --ntasks-per-node=1) and rank 0 writes the results."""
    out = tmp_path / "sweep"
    env = {**os.environ, **stand_in_slurm(tmp_path / "bin", tmp_path / "submitted", out), "OMP_NUM_THREADS": "1",
           "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "ice_exp", "-m", "hydra/launcher=slurm", "trainer=ddp_cpu", *QUIET_JOB,
                           "generator.resolution=32", "samples.indices=[0,1]", f"hydra.sweep.dir={out}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (script,) = (tmp_path / "submitted").iterdir()
    assert sbatch_flags(script.read_text())["ntasks-per-node"] == "2"
    logs = [(out / ".submitit" / "100" / f"100_{t}_log.out").read_text() for t in (0, 1)]
    assert all("MEMBER: 1/2" in logs[0] and f"global_rank={t}(2)" in log for t, log in enumerate(logs))
    assert json.loads((out / "0_mouth_shape" / "metrics.json").read_text())["status"] == "completed"


def test_report_rows_and_metrics_as_columns(hand_made, capsys):
    out = hand_made / "by_solver"
    assert report([str(hand_made), "--rows", "solver,space", "--cols", "none", "--metrics", "gt/dim_found,eval/gain",
                   "--out", str(out), "--format", "md,csv"]) == 0
    markdown = capsys.readouterr().out
    table = table_rows(markdown.split("## Failures")[0])
    assert table[0] == ["solver", "space", "gt/dim_found", "eval/gain"]
    # EarlyProjection, s: six finished runs (two criteria × three seeds) and one failed
    assert table[1] == ["EarlyProjection", "s", "3 ± 0 (+1 failed)", "10 ± 8.94 (+1 failed)"]
    assert "varying: criteria.name, seed" in markdown  # averaged over criteria and seeds
    assert not (out / "report.tex").exists()


def test_report_latex_booktabs_and_escaping(hand_made):
    out = hand_made / "tex"
    assert report([str(hand_made), "--out", str(out), "--format", "tex"]) == 0
    tex = (out / "report.tex").read_text()
    assert tex.count("\\begin{tabular}{lcc}") == 5 and tex.count("\\toprule") == 5 and "\\bottomrule" in tex
    assert "\\caption{gt/principal\\_angle\\_max\\_deg (mean $\\pm$ std over seed)}" in tex
    assert "criteria.name & EarlyProjection & LateProjection \\\\" in tex
    assert "eye\\_shape & 2.67 $\\pm$ 2.08 & 103 $\\pm$ 2.08 \\\\" in tex
    assert latex_escape("a_b & 50% #1 {x} ~^\\") == ("a\\_b \\& 50\\% \\#1 \\{x\\} "
                                                      "\\textasciitilde{}\\textasciicircum{}\\textbackslash{}")
    assert not (out / "report.md").exists()


def test_report_without_runs_fails(tmp_path, capsys):
    assert report([str(tmp_path)]) == 1
    assert "no run folders" in capsys.readouterr().err


def test_report_unknown_key_names_the_keys_that_vary(hand_made, capsys):
    with pytest.raises(SystemExit):
        report([str(hand_made), "--rows", "criteria.nme"])
    assert "keys that vary across these runs: criteria.name, seed, solver, solver._target_" in capsys.readouterr().err


def test_sigterm_in_a_multirun_records_the_job_and_stops_the_sweep(hydra_job, tmp_path, monkeypatch):
    from ice_exp.common import stop

    def stopped(cfg, out_dir):
        raise stop.Stopped("SIGTERM")

    monkeypatch.setattr("ice_exp.run.discovery.run", stopped)
    with pytest.raises(stop.Stopped):  # not swallowed like a failing job: the process was told to end
        cli_main(hydra_job(RunMode.MULTIRUN))
    assert json.loads((tmp_path / "job" / "failure.json").read_text())["error_type"] == "Stopped"


# ---------------------------------------------------------------- W&B: one group per sweep, one artifact per task

def test_wandb_group_is_the_sweep_in_a_multirun_and_the_run_name_otherwise(hydra_job, tmp_path, monkeypatch):
    assert default_group("mouth_shape") == "mouth_shape"  # no Hydra app (library use)
    hydra_job(RunMode.RUN)
    assert default_group("mouth_shape") == "mouth_shape"
    groups = []
    for parent in ("a", "b"):  # two sweeps in folders of one name stay two groups
        hydra_job(RunMode.MULTIRUN, f"hydra.sweep.dir={tmp_path / parent / 'toyface-v1'}")
        groups.append(default_group("mouth_shape"))
    assert groups[0] != groups[1] and all(re.fullmatch(r"toyface-v1-[0-9a-f]{8}", g) for g in groups)
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = make_logger({"_target_": "ice_exp.run.tracking.wandb_logger", "_partial_": True, "group": None}, tmp_path, "mouth_shape", [], {})
    assert run.group == groups[1]  # every job of the sweep, whatever its criteria
    close(run)


def test_wandb_run_name_says_what_the_sweep_varies(hydra_job, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()  # the sweeper's record of its command line, as Hydra's basic sweeper writes it
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": [
        *QUIET_JOB, "solver=sefa,lowrankgan", "seed=range(3)", "space=s"]}}}))
    hydra_job(RunMode.MULTIRUN, f"hydra.sweep.dir={sweep}", "solver=sefa", "seed=1", "space=s")
    assert swept_overrides() == ["solver=sefa", "seed=1"]
    hydra_job(RunMode.RUN, "solver=sefa")
    assert swept_overrides() == []


def test_subspace_artifact_name_separates_generator_world_criteria_space_and_solver():
    import wandb

    meta = {"generator": "ice_exp.generators.toyface.ToyFaceGenerator", "world": 0, "criteria": "mouth_shape", "space": "s",
            "solver": "ice_exp.solvers.ice.EarlyProjection", "config_hash": "a1", "criteria_hash": "c3"}
    assert artifact_name(meta) == "subspace-ToyFaceGenerator-world0-mouth_shape.c3-s-EarlyProjection"
    others = [{**meta, key: value} for key, value in [("world", 1), ("space", "w"), ("criteria", "eye_shape"),
                                                       ("solver", "ice_exp.solvers.ice.LateProjection"),
                                                       ("criteria_hash", "d4")]]  # mouth_shape_pixels: the same name
    assert len({artifact_name(m) for m in [meta, *others]}) == 6
    assert artifact_name({**meta, "config_hash": "b2"}) == artifact_name(meta)  # reruns stack as versions
    assert artifact_name({**meta, "world": None}) == "subspace-ToyFaceGenerator-mouth_shape.c3-s-EarlyProjection"  # StyleGAN2
    odd = artifact_name({**meta, "criteria": "lips: a/b c"})
    assert odd == "subspace-ToyFaceGenerator-world0-lips__a_b_c.c3-s-EarlyProjection"
    assert wandb.Artifact(odd, type="subspace").name == odd  # W&B refuses ':', '/' and ' ' in names

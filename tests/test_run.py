"""One run as a story: config errors before compute (and before torch is imported), the run's status in its
records, results kept when a later stage fails, unique run folders, a polite stop on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from ice_exp.common import stop
from ice_exp.config import CONF_DIR
from ice_exp.criteria.base import EmptyMask
from ice_exp.engine import grams
from ice_exp.engine.cache import tensors_sha256
from ice_exp.run import evaluation
from ice_exp.run.discovery import run
from ice_exp.run.records import failed_status
from tests.conftest import TINY, make_config

REPO = Path(CONF_DIR).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
def test_a_run_records_its_status_completed(tmp_path):
    metrics = run(make_config(*TINY), tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == saved["status"] == "completed"
    assert json.loads((tmp_path / "run_info.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("solver", ["sefa", "ganspace"])
def test_a_solver_without_grams_skips_the_accumulation(solver, monkeypatch, tmp_path):
    """SeFa and GANSpace read the generator only: no Jacobian is computed, the run is scored as any other."""
    def no_compute(*args, **kwargs):
        raise AssertionError("a Jacobian was computed for a solver that needs no Grams")

    monkeypatch.setattr(grams, "sample_grams", no_compute)
    metrics = run(make_config(*TINY, f"solver={solver}", "solver.max_directions=3", "solver.num_samples=2000"
                              if solver == "ganspace" else "solver.layers=null", "counterfactual.enabled=false"), tmp_path)
    assert metrics["solver/num_directions"] == 3 and metrics["gt/dim_found"] == 3
    assert "baseline/pca/principal_angle_max_deg" not in metrics and (tmp_path / "subspace.safetensors").is_file()


def test_a_failing_stage_is_recorded_and_raised(tmp_path):
    """The hat region is never drawn: the accumulation fails; run_info.json says where and why."""
    with pytest.raises(EmptyMask, match="mask is empty"):
        run(make_config("criteria.suppress.outside_mouth.criterion.regions=[hat]", *TINY), tmp_path)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["status"] == "failed:accumulate" and "EmptyMask: " in info["error"] and "mask is empty" in info["error"]
    assert not (tmp_path / "metrics.json").exists()  # no results: nothing claims to be one


def test_a_late_failure_keeps_the_discovery_results(tmp_path, monkeypatch):
    """The explanation fails after the subspace and the first metrics.json are written: they stay, marked failed."""
    def broken(*args, **kwargs):
        raise RuntimeError("classifier exploded")

    monkeypatch.setattr("ice_exp.counterfactual.in_subspaces.explain", broken)  # discovery imports it when it explains
    cfg = make_config(*TINY, "counterfactual.enabled=true", "classifier.resolution=32", "classifier.train.samples=128",
                      "classifier.train.held_out=32", "classifier.train.epochs=1", f"classifier.cache_dir={tmp_path / 'cls'}")
    with pytest.raises(RuntimeError, match="classifier exploded"):
        run(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["status"] == "failed:explain" and saved["error"] == "RuntimeError: classifier exploded"
    assert "gt/principal_angle_max_deg" in saved and (tmp_path / "run" / "subspace.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["status"] == "failed:explain"


def test_an_empty_mask_on_one_held_out_sample_skips_that_sample(tmp_path, monkeypatch):
    real, calls = evaluation.directional_changes, []

    def empty_on_the_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise EmptyMask("masked_pixels regions=['mouth']: mask is empty on batch item(s) [0]")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "directional_changes", empty_on_the_first)
    metrics = run(make_config(*TINY, "samples.eval_num=3"), tmp_path)
    assert metrics["eval/skipped_samples"] == 1 and len(calls) == 3
    assert metrics["eval/gain"] > 1 and metrics["status"] == "completed"


def test_a_run_refuses_a_folder_holding_another_runs_results(tmp_path):
    run(make_config(*TINY, "samples.eval_num=0"), tmp_path)
    with pytest.raises(FileExistsError, match=f"run folder {tmp_path} already holds a run's results"):
        run(make_config(*TINY, "samples.eval_num=0"), tmp_path)
    assert json.loads((tmp_path / "run_info.json").read_text())["status"] == "completed"  # the first run's record


def test_two_runs_started_together_get_two_folders(tmp_path):
    """The default run folder has microseconds: two runs started in the same second do not share it."""
    procs = [subprocess.Popen([sys.executable, "-m", "ice_exp", "samples.pool=0"], cwd=tmp_path, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    assert all(p.wait(timeout=60) != 0 for p in procs)  # each stops at the range check, in its own folder
    folders = sorted((tmp_path / "outputs" / "mouth_shape").iterdir())
    assert len(folders) == 2 and all((f / ".hydra" / "overrides.yaml").is_file() for f in folders), folders


def test_sigterm_stops_the_accumulation_between_samples(tmp_path):
    """SIGTERM (SLURM's warning before a kill) ends the run within seconds, the status says where, and every
    finished sample is a valid Gram cache file."""
    cache, out = tmp_path / "cache", tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ice_exp", "logger=none", "counterfactual.enabled=false",
                             "generator.resolution=32", "samples.pool=64", f"samples.indices=[{','.join(map(str, range(64)))}]",
                             "samples.eval_num=0", f"engine.cache_dir={cache}", f"hydra.run.dir={out}",
                             "trainer.enable_progress_bar=false"], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(cache.rglob("*.safetensors")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGTERM)
    started = time.perf_counter()
    _, stderr = proc.communicate(timeout=60)
    assert time.perf_counter() - started < 10 and proc.returncode != 0
    assert "SIGTERM received: run stopped" in stderr
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "failed:accumulate (SIGTERM)" and "Stopped" in info["error"]
    files = list(cache.rglob("*.safetensors"))
    assert 0 < len(files) < 64 and not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    for path in files:  # each finished sample whole: its tensors match the checksum it was written with
        with safe_open(str(path), "pt") as f:
            assert f.metadata()["sha256"] == tensors_sha256({name: f.get_tensor(name) for name in f.keys()})


def test_sigterm_stops_a_library_accumulation_and_the_previous_handler_comes_back():
    """No app installed the handler (a script or notebook calling the library): a SIGTERM during the
    accumulation is still a clean stop, one after the last sample's check still raises, and afterwards the
    process's own handler is back."""
    previous = signal.getsignal(signal.SIGTERM)
    mine = lambda signum, frame: None  # noqa: E731
    try:
        signal.signal(signal.SIGTERM, mine)
        with pytest.raises(stop.Stopped, match="SIGTERM received"):
            with stop.between_samples():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)  # noted, not raised: the block ends normally and the stop comes on the way out
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_raises_at_once_outside_the_accumulation_and_between_samples_inside():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop.install()
        with stop.between_samples():
            os.kill(os.getpid(), signal.SIGTERM)  # noted only: a cache file being written is finished first
            with pytest.raises(stop.Stopped, match="SIGTERM received"):
                stop.check()
        with pytest.raises(stop.Stopped) as err:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode
        assert failed_status("evaluate", err.value) == "failed:evaluate (SIGTERM)"
    finally:
        signal.signal(signal.SIGTERM, previous)

"""The W&B run as a dashboard user gets it: a tiny discovery job of a sweep, run offline, read back from its
``.wandb`` file (the records ``wandb sync`` uploads, parsed with wandb's own protobuf messages): run name,
group, config with the overrides, summary, the directions history, tables, images, artifact and exit code."""
from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from ice_exp.common.stop import Stopped
from ice_exp.config import CONF_DIR
from ice_exp.run.discovery import run
from tests import conftest
from tests.conftest import table_rows

TINY = [*conftest.TINY, "samples.eval_num=2", "trainer.enable_progress_bar=false"]
EXPLAIN = ["counterfactual.num_samples=3", "counterfactual.target_class=flip", "counterfactual.iterations=2",
           "counterfactual.grid_samples=2", "counterfactual.tile=32", "classifier.resolution=32", "classifier.min_accuracy=0",
           "classifier.train={samples: 128, held_out: 64, epochs: 1, batch_size: 64, lr: 3.0e-3, seed: 0}"]
BLOCK, HEADER = 32768, 7  # the .wandb file: leveldb-style log blocks after a 7-byte ":W&B" header


def records(path: Path) -> Iterator[Any]:
    """The ``wandb_internal_pb2.Record`` messages of a ``.wandb`` file: 32 KiB blocks of chunks, each with a
    7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last); a block's tail under 7 bytes is
    padding."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunks = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunks, pos = chunks + data[pos + HEADER:pos + HEADER + length], pos + HEADER + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def values(items: Any) -> dict[str, Any]:
    """History or summary items as a dict: ``key``, or ``nested_key`` (a logged media object or table, one
    item per field) nested back into its dict."""
    out: dict[str, Any] = {}
    for item in items:
        *parents, last = list(item.nested_key) or [item.key]
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = json.loads(item.value_json)
    return out


def read_back(out: Path) -> dict[str, Any]:
    """What the dashboard shows of the one offline run under ``out``: the run record, config, final summary,
    history rows, artifacts and exit code, and the run's files folder. wandb's service process writes the file
    and may still hold its last block after ``finish``: it is read once the service has ended, as ``wandb sync``
    reads it once the job has."""
    import wandb

    wandb.teardown()
    (path,) = out.glob("wandb/offline-run-*/run-*.wandb")
    got: dict[str, Any] = {"config": {}, "summary": {}, "history": [], "artifacts": [], "files": path.parent / "files"}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            got["run"] = r.run
            got["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            got["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "summary":
            got["summary"].update(values(r.summary.update))
        elif kind == "history":
            got["history"].append(values(r.history.item))
        elif kind == "artifact":
            got["artifacts"].append(r.artifact)
        elif kind == "exit":
            got["exit_code"] = r.exit.exit_code
    return got


def table(got: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """A logged wandb.Table's JSON (columns, data), from the run's media files."""
    assert value["_type"] == "table-file"
    return json.loads((got["files"] / value["path"]).read_text())


@pytest.fixture
def sweep_job(tmp_path, monkeypatch):
    """A job of the sweep ``seed=0,1`` (its multirun.yaml as Hydra's sweeper writes it), job seed=1, W&B offline
    with every file under tmp_path."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("ICE_EXP_CACHE", str(tmp_path / "cache"))  # the tiny classifier trained here
    sweep = tmp_path / "sweep"
    sweep.mkdir()

    def make(*overrides: str) -> DictConfig:
        job = [*TINY, "logger=wandb", "seed=1", *overrides]
        (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": [*TINY, "seed=0,1", *overrides]}}}))
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[*job, f"hydra.sweep.dir={sweep}"], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    yield make
    HydraConfig.instance().cfg = None
    wandb.teardown()


def test_offline_run_reads_back_as_a_dashboard_shows_it(sweep_job, tmp_path, monkeypatch):
    from ice_exp.run import discovery

    write = discovery.write_discovery

    def write_and_print(*args: Any) -> None:  # what the run prints mid-run reaches the run's console log
        print("MIDRUN-MARKER", flush=True)
        write(*args)

    monkeypatch.setattr(discovery, "write_discovery", write_and_print)
    out = tmp_path / "sweep" / "0_mouth_shape"
    out.mkdir()
    metrics = run(sweep_job(*EXPLAIN), out)
    got = read_back(out)
    r = got["run"]
    assert r.display_name == "mouth_shape seed=1"  # what the sweep varies, not what every job shares
    assert r.run_group.startswith("sweep-") and len(r.run_group) == len("sweep-") + 8 and r.job_type == "discovery"
    assert {"criteria:mouth_shape", "space:s", "solver:EarlyProjection", "generator:ToyFaceGenerator"} <= set(r.tags)
    config = got["config"]
    assert config["criteria"]["name"] == "mouth_shape" and config["seed"] == 1 and "seed=1" in config["overrides"]

    summary = got["summary"]  # every final scalar, with metrics.json's value
    for key in ("gt/purity_mean", "gt/pass", "eval/gain", "counterfactual/flip_rate", "time/discovery_s"):
        assert summary[key] == pytest.approx(metrics[key])
    assert not any(k.endswith("_per_direction") for k in summary)
    assert not any(k.startswith("direction") and k != "directions" for k in summary)  # history over a step

    k = metrics["solver/num_directions"]
    steps = [h for h in got["history"] if "direction/sigma" in h]
    assert [h["direction"] for h in steps] == list(range(k))
    assert [h["direction/sigma"] for h in steps] == pytest.approx(metrics["solver/sigma"])
    media = {key: v for h in got["history"] for key, v in h.items() if isinstance(v, dict) and "_type" in v}
    for key in ("images/spectrum", "images/directions", "counterfactual/grid", "counterfactual/differences"):
        assert media[key]["_type"] == "image-file"
    assert media["images/spectrum"]["width"] != media["images/directions"]["width"]  # why they are two keys

    directions = table(got, media["directions"])
    assert directions["columns"] == ["direction", "sigma", "gain", "leak/other_landmarks", "leak/outside_mouth",
                                     "heldout_share", "angle_to_truth_deg"]
    assert len(directions["data"]) == k
    assert [row[2] for row in directions["data"]] == pytest.approx(metrics["eval/gain_per_direction"])
    assert [row[5] for row in directions["data"]] == pytest.approx(metrics["trust/heldout_share_per_direction"])
    assert max(row[-1] for row in directions["data"]) <= metrics["gt/principal_angle_max_deg"] + 1e-6
    samples = table(got, media["counterfactual/per_sample"])
    assert len(samples["data"]) == 3 and {"sample", "flipped", "dp"} <= set(samples["columns"])
    assert len(table(got, media["counterfactual/table"])["data"]) == 1

    (artifact,) = [a for a in got["artifacts"] if a.type == "subspace"]  # beside the tables' own (run-<id>-<key>)
    meta = json.loads(artifact.metadata)
    assert artifact.name == f"subspace-ToyFaceGenerator-world0-mouth_shape.{meta['criteria_hash']}-s-EarlyProjection"
    assert set(artifact.aliases) == {"latest", f"config-{meta['config_hash']}", "seed-1"}
    assert {e.path for e in artifact.manifest.contents} >= {"subspace.safetensors", "metrics.json", "config_resolved.yaml"}
    assert got["exit_code"] == 0 and "MIDRUN-MARKER" in (got["files"] / "output.log").read_text()
    assert_workspace_keys_exist(got, media)


def workspace_keys(node: Any) -> Iterator[str]:
    """Every ``summary.*``, ``config.*`` and ``history.*`` key named in docs/wandb_workspace.yaml."""
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            yield from workspace_keys(value)
    elif isinstance(node, str) and node.split(".", 1)[0] in ("summary", "config", "history"):
        yield node


def assert_workspace_keys_exist(got: dict[str, Any], media: dict[str, Any]) -> None:
    """The documented workspace charts keys the run has: its summary, its (nested) config, its history."""
    spec = yaml.safe_load((Path(CONF_DIR).parent / "docs" / "wandb_workspace.yaml").read_text())
    history = {key for row in got["history"] for key in row} | set(media)
    keys = list(workspace_keys(spec))
    assert len(keys) > 20
    for key in keys:
        where, name = key.split(".", 1)
        if where == "config":
            node = got["config"]
            for part in name.split("."):
                node = node[part]
        else:
            assert name in (got["summary"] if where == "summary" else history), key


def test_a_stopped_run_shows_in_wandb_as_failed_with_its_discovery(sweep_job, tmp_path, monkeypatch):
    def stopped(*args, **kwargs):
        raise Stopped("SIGTERM")

    monkeypatch.setattr("ice_exp.counterfactual.in_subspaces.explain", stopped)  # SIGTERM during the explanation
    out = tmp_path / "job"
    out.mkdir()
    with pytest.raises(Stopped):
        run(sweep_job(*EXPLAIN), out)
    got = read_back(out)
    assert got["exit_code"] == 1 and got["summary"]["error"].startswith("Stopped: SIGTERM")
    assert got["run"].display_name == "mouth_shape seed=1"
    written = json.loads((out / "metrics.json").read_text())  # the discovery's results, as metrics.json keeps them
    assert written["status"] == "failed:explain (SIGTERM)"
    assert got["summary"]["gt/purity_mean"] == pytest.approx(written["gt/purity_mean"])


def test_a_comparison_is_one_wandb_run_from_its_build_to_its_table(tmp_path, monkeypatch):
    """ice-compare's W&B run starts before the build (so a stage that fails or is stopped shows as a failed
    run), and a finished one holds the compare table."""
    import wandb

    from ice_exp.run import comparison

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("compare", overrides=[*TINY, "logger=wandb", "compare.solvers=[early_projection]", "engine.cache_dir=null"])
    done, stopped = tmp_path / "done", tmp_path / "stopped"
    rows = comparison.compare(cfg, done)
    assert table_rows(comparison.headline(rows))[0][:3] == ["solver", "directions", "gt/pass"]  # the console's table

    def stop(*args: Any, **kwargs: Any) -> None:
        raise Stopped("SIGTERM")

    monkeypatch.setattr(comparison, "edit_scores", stop)  # SIGTERM while the first solver is scored
    with pytest.raises(Stopped):
        comparison.compare(cfg, stopped)
    finished, failed = read_back(done), read_back(stopped)
    assert finished["exit_code"] == 0 and finished["run"].job_type == "compare" and finished["run"].display_name == "compare-mouth_shape"
    compared = table(finished, finished["summary"]["compare"])
    assert [row[compared["columns"].index("solver")] for row in compared["data"]] == ["early_projection", "random"]
    assert failed["exit_code"] == 1 and failed["summary"]["error"].startswith("Stopped: SIGTERM")
    assert not (stopped / "compare.md").exists()
    wandb.teardown()

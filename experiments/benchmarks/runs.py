"""Whole discovery runs timed in one process, today's engine side by side with the per-criterion path.

``run_rows``: the recommended toyface run (or ANALYZERS: with network analyzers); ``process_rows``: the same
run as a user starts it, ``ice-exp`` in a fresh process (imports, Hydra and all); ``protocol_rows``: the
seven tasks of one world of the protocol.

A row is ``ice_exp.run.discovery.run`` (build → accumulate → solve → evaluate → write) on one config, after the
imports: ``off`` without the Gram cache (the default run), ``cold`` with an empty one, ``warm`` on the cache
the cold run filled, with another solver (a solver sweep's later jobs). The per-criterion path
(experiments/benchmarks/per_criterion.py) replaces the engine's per-sample Grams and the evaluation's
directional changes (which then never read the held-out faces' Grams); everything else is shared. An
untimed run first takes the process's one-off costs (lazy initialisation), so that neither path pays them.
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from hydra import compose, initialize_config_dir

from experiments.benchmarks import per_criterion
from ice_exp.config import CONF_DIR
from ice_exp.run import discovery

RECOMMENDED = ["experiment=toyface/mouth_shape", "logger=none", "counterfactual.enabled=false"]
ANALYZERS = [*RECOMMENDED, "analyzer/parser=bisenet_random", "analyzer.parser.size=256", "analyzer/landmarker=fan_random",
             "analyzer.landmarker.size=128", "analyzer.landmarker.num_modules=2", "samples.indices=[0]", "samples.eval_num=1"]
"""The recommended run with BiSeNet and FAN of the toyface-trained analyzers' shapes (conf/analyzer_net), random
weights (the trained ones take 30 min to train; the time does not depend on the weights), one sample."""
TASKS = ("face_boundary", "eye_shape", "eye_photometry", "hair_photometry", "lip_color", "face_color", "mouth_shape")
PROTOCOL = ["logger=none", "counterfactual.enabled=false", "samples.eval_num=2"]  # conf/worlds.yaml's run settings
OTHER_SOLVER = "solver=late_projection"


@contextlib.contextmanager
def path(name: str) -> Iterator[None]:
    """``engine``: today's code; ``per-criterion``: each criterion rendering on its own."""
    if name == "engine":
        yield
        return
    with mock.patch("ice_exp.engine.grams.sample_grams", per_criterion.sample_grams), \
            mock.patch("ice_exp.run.evaluation.directional_changes", per_criterion.directional_changes), \
            mock.patch("ice_exp.run.evaluation.changes_from_grams", lambda *_: None):
        yield


def timed_run(overrides: list[str], out_dir: Path) -> tuple[float, float, dict[str, Any]]:
    """(wall seconds, CPU seconds of this process, metrics) of one run."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    started, cpu = time.perf_counter(), time.process_time()
    metrics = discovery.run(cfg, out_dir)
    return time.perf_counter() - started, time.process_time() - cpu, metrics


def run_rows(overrides: list[str] = RECOMMENDED, kinds: tuple[str, ...] = ("off", "cold", "warm")) -> list[dict[str, Any]]:
    """The ``kinds`` of run (off, cold, warm) on both paths, and their ratios (wall and CPU time: on a
    shared machine the CPU time is the steadier); each path gets its own cache folder."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        timed_run(overrides, root / "warm-up")
        for name in ("per-criterion", "engine"):
            cache = f"engine.cache_dir={root / name / 'cache'}"
            with path(name):
                for kind, extra in [k for k in (("off", []), ("cold", [cache]), ("warm", [cache, OTHER_SOLVER])) if k[0] in kinds]:
                    seconds, cpu, metrics = timed_run(overrides + extra, root / name / kind)
                    rows.append({"run": " ".join(overrides + extra[1:]), "cache": kind, "path": name, "seconds": seconds,
                                 "cpu_s": cpu, "discovery_s": metrics["time/discovery_s"], "gt/pass": metrics.get("gt/pass"),
                                 "gt/principal_angle_max_deg": metrics.get("gt/principal_angle_max_deg")})
    for row in rows:
        old = next(r for r in rows if r["path"] == "per-criterion" and r["cache"] == row["cache"])
        row["speedup"], row["speedup_cpu"] = old["seconds"] / row["seconds"], old["cpu_s"] / row["cpu_s"]
    return rows


def process_rows(overrides: list[str] = RECOMMENDED) -> list[dict[str, Any]]:
    """The run as ``ice-exp <overrides>`` starts it, each path in a fresh process (``main`` below: the app's
    own entry point under ``path``), timed from the spawn to the exit, imports included."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("per-criterion", "engine"):
            command = [sys.executable, "-m", "experiments.benchmarks.runs", "--path", name, *overrides, f"hydra.run.dir={Path(tmp) / name}"]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parents[2])
            seconds = time.perf_counter() - started
            if done.returncode:
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
            rows.append({"run": " ".join(overrides), "path": name, "process_seconds": seconds})
    for row in rows:
        row["speedup"] = rows[0]["process_seconds"] / row["process_seconds"]
    return rows


def protocol_rows(world: int = 10, pool: int = 8) -> list[dict[str, Any]]:
    """The seven tasks' recommended runs on one world of the protocol (conf/worlds.yaml, no Gram cache yet),
    one row per path: total time, passes of the ground-truth bars, ratio."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        timed_run(RECOMMENDED, Path(tmp) / "warm-up")
        for name in ("per-criterion", "engine"):
            seconds = cpu = passed = 0.0
            with path(name):
                for task in TASKS:
                    overrides = [f"experiment=toyface/{task}", f"generator.seed={world}", f"samples.seed={pool}", *PROTOCOL]
                    wall, used, metrics = timed_run(overrides, Path(tmp) / name / task)
                    seconds, cpu, passed = seconds + wall, cpu + used, passed + metrics["gt/pass"]
            rows.append({"run": f"7 recommended tasks, world {world}, pool {pool}", "path": name, "seconds": seconds,
                         "cpu_s": cpu, "gt/pass": f"{passed:.0f}/{len(TASKS)}"})
    for row in rows:
        row["speedup"], row["speedup_cpu"] = rows[0]["seconds"] / row["seconds"], rows[0]["cpu_s"] / row["cpu_s"]
    return rows


def main(argv: list[str] | None = None) -> None:
    """``python -m experiments.benchmarks.runs --path <path> <overrides>``: ice-exp's own entry point on that path."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--path", choices=["engine", "per-criterion"], required=True)
    args, overrides = parser.parse_known_args(argv)
    from ice_exp.apps import discover

    sys.argv = ["ice-exp", *overrides]
    with path(args.path):
        discover.main()


if __name__ == "__main__":
    main()

"""Reproduce experiments/results/trained_analyzers/RESULTS.md from nothing: train BiSeNet and FAN on toyface with the
recipes of conf/analyzer_net (or read them from the cache), score them against the oracles, then run the
seven tasks (tasks.py) and the seed-glue measurements (glue.py) with them.

``python -m experiments.trained_analyzers.reproduce`` (``make trained-analyzers``). CPU cost on 2 cores:
training ~26 min (BiSeNet) + ~30 min (FAN) on first use, scoring ~3 min, the seven tasks over worlds 10-12
~60 min, the glue ~10 min. Every stage resumes: the weights are cached, tasks and glue skip the rows already
in their .jsonl files and the runs share a Gram cache (``--grams``).
"""
from __future__ import annotations

import argparse
import shlex
import shutil
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.trained_analyzers import glue, tasks
from ice_exp.config import CONF_DIR
from ice_exp.training.analyzers.data import ToyfaceData
from ice_exp.training.analyzers.recipe import load_analyzer, trained_weights
from ice_exp.training.analyzers.scores import ScoreFaces, score, write_scores

RESULTS = Path(__file__).parents[1] / "results" / "trained_analyzers"  # the committed results


def recipe(net: str, overrides: list[str]) -> Any:
    """conf/train_analyzer.yaml with ``analyzer_net=<net>``."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train_analyzer", overrides=[f"analyzer_net={net}", *overrides])


def train_both(overrides: dict[str, list[str]]) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    """{net: its settings}, {net: its weight file}: trained on first use, read from the cache after."""
    nets, files = {}, {}
    for net in ("bisenet", "fan"):
        cfg = recipe(net, overrides[net])
        nets[net] = OmegaConf.to_container(cfg.analyzer_net, resolve=True)
        files[net] = trained_weights(nets[net], ToyfaceData(**cfg.data), cfg.seed, cfg.accelerator, cfg.cache_dir)
    return nets, files


def loading_overrides(nets: dict[str, dict[str, Any]], files: dict[str, Path], into: str = "analyzer") -> str:
    """The run overrides that load both files, exactly as a user loads them: as the run's analyzers, or
    with ``into="crosscheck"`` / ``into="trust"`` as its cross-check or trust analyzers."""
    group = "analyzer/{model}" if into == "analyzer" else "analyzer/{model}@" + into + ".{model}"
    return (f"{group.format(model='parser')}=bisenet {into}.parser.path={files['bisenet']} {into}.parser.size={nets['bisenet']['size']} "
            f"{group.format(model='landmarker')}=fan {into}.landmarker.path={files['fan']} {into}.landmarker.size={nets['fan']['size']} "
            f"{into}.landmarker.num_modules={nets['fan']['num_modules']}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worlds", default="10-12", help="first-last generator.seed of the task and glue runs")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for scores.*, tasks.* and glue.*")
    p.add_argument("--grams", default="outputs/trained_analyzers/grams", help="Gram cache shared by the runs")
    p.add_argument("--tasks", nargs="*", default=None, help="conf/task names (default: all seven)")
    p.add_argument("--overrides", default="", help="further ice-exp overrides for every task and glue run")
    p.add_argument("--bisenet", default="", help="overrides of conf/train_analyzer.yaml for the BiSeNet (and the scoring)")
    p.add_argument("--fan", default="", help="overrides of conf/train_analyzer.yaml for the FAN")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    nets, files = train_both({"bisenet": shlex.split(args.bisenet), "fan": shlex.split(args.fan)})
    analyzers = loading_overrides(nets, files)
    print(f"analyzers: {analyzers}", flush=True)

    faces = ScoreFaces(**OmegaConf.to_container(recipe("bisenet", shlex.split(args.bisenet)).analyzer_scores, resolve=True))
    scores = score(load_analyzer(nets["bisenet"], files["bisenet"]), load_analyzer(nets["fan"], files["fan"]), faces)
    write_scores(scores, args.out / "scores.json", faces)  # as ice-score-analyzers writes them
    for net, file in files.items():  # the training records (settings, times, loss curve) beside them
        shutil.copyfile(file.parent / "record.json", args.out / f"record_{net}.json")

    common = ["--worlds", args.worlds, "--analyzers", analyzers, "--overrides", f"engine.cache_dir={args.grams} {args.overrides}",
              *(["--tasks", *args.tasks] if args.tasks else [])]
    tasks.main([*common, "--out", str(args.out / "tasks")])
    glue.main([*common, "--out", str(args.out / "glue")])


if __name__ == "__main__":
    main()

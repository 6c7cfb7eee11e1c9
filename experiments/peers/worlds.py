"""Every solver on the seven toyface tasks over the world protocol's worlds: pass rate, median and worst.

``OMP_NUM_THREADS=1 python -m experiments.peers.worlds [--worlds 10-19] [--pool 8] [--solvers a,b] [--out outputs/peers_worlds]``
``python -m experiments.peers.worlds --rows a.csv b.csv ...``: the table of rows written before (one run per world,
e.g. experiments/results/peers/), nothing recomputed.

Each (task, world) is one ``ice-compare`` run (``ice_exp.run.comparison.compare``) with the task's recommended
criteria and samples (experiment=toyface/<task>): the Grams once, then every solver, each solution cut to the
task's true dimension (the fair count for solvers that return a fixed number). Gram files are cached
(``--cache``), so the world protocol's runs and this one share them. Writes peers_worlds.md / .csv.
"""
from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from hydra import compose, initialize_config_dir

from ice_exp.config import CONF_DIR
from ice_exp.config.task import true_groups
from ice_exp.run.comparison import compare

SOLVERS = ["ice_recommended", "early_projection", "late_projection", "lowrankgan", "resefa", "sefa", "ganspace"]


def run_all(worlds: list[int], pool: int, cache: str, solvers: list[str], tasks: list[str]) -> list[dict]:
    rows = []
    for task, group in ((t, true_groups()[t]) for t in tasks):
        for world in worlds:
            with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                cfg = compose("compare", overrides=[
                    f"experiment=toyface/{task}", f"generator.seed={world}", f"samples.seed={pool}", "logger=none",
                    "samples.eval_num=2", f"compare.max_directions={len(group)}", f"compare.solvers=[{','.join(solvers)}]",
                    f"engine.cache_dir={cache}", "counterfactual.enabled=false"])
            for row in compare(cfg):
                rows.append({"task": task, "world": world, "solver": row["solver"], "pass": row.get("gt/pass", 0),
                             "angle": row.get("gt/principal_angle_max_deg", 90.0), "purity": row.get("gt/purity_mean", 0.0),
                             "dims": row["directions"], "gain": row.get("eval/gain", float("nan"))})
            print(task, world, "done", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per task and solver, pass rate, median [worst] largest angle and purity."""
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    lines = ["| task | " + " | ".join(solvers) + " |", "|---|" + "---|" * len(solvers)]
    for task in true_groups():
        cells = []
        for solver in solvers:
            sel = [r for r in rows if r["task"] == task and r["solver"] == solver]
            if not sel:
                cells.append("-")
                continue
            angles, purities = [r["angle"] for r in sel], [r["purity"] for r in sel]
            cells.append(f"{sum(r['pass'] for r in sel)}/{len(sel)} · {statistics.median(angles):.2g}° [{max(angles):.2g}°]"
                         f" · {statistics.median(purities):.3f} [{min(purities):.3f}]")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_rows(path: Path) -> list[dict]:
    """Rows of a peers_worlds.csv, typed as run_all returns them."""
    with open(path, newline="") as f:
        return [{**r, "world": int(r["world"]), "pass": int(r["pass"]), "angle": float(r["angle"]),
                 "purity": float(r["purity"]), "dims": int(r["dims"]), "gain": float(r["gain"])} for r in csv.DictReader(f)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", default="10-19", help="first-last generator.seed (default: the world protocol's 10-19)")
    p.add_argument("--pool", type=int, default=8, help="samples.seed of the latent pool")
    p.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated conf/solver names (default: all peers and ICE)")
    p.add_argument("--cache", default=".cache/grams", help="Gram cache folder (shared with the world protocol's runs)")
    p.add_argument("--out", type=Path, default=Path("outputs/peers_worlds"))
    p.add_argument("--tasks", default=",".join(true_groups()), help="comma-separated tasks (default: all seven)")
    p.add_argument("--rows", type=Path, nargs="+", help="print the table of these peers_worlds.csv files instead of running")
    args = p.parse_args()
    if args.rows:
        print(table([row for path in args.rows for row in read_rows(path)]), end="")
        return
    if unknown := set(args.tasks.split(",")) - set(true_groups()):
        p.error(f"--tasks: unknown {', '.join(sorted(unknown))}; allowed: {', '.join(true_groups())}")
    first, last = (int(x) for x in args.worlds.split("-"))
    rows = run_all(list(range(first, last + 1)), args.pool, args.cache, args.solvers.split(","), args.tasks.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "peers_worlds.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = table(rows)
    (args.out / "peers_worlds.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""``ice-report <sweep or run folders...>``: every run's config and metrics in one table, from local files.

A run folder is one with ``config_resolved.yaml`` (or ``.hydra/config.yaml``). Its status is the ``status`` of
its metrics.json / run_info.json (``completed``, ``running``, ``failed:<stage>``; runs older than the status
with a metrics.json count as completed), ``failed`` with a ``failure.json`` (written by ``ice-exp -m``), or
``unfinished`` without any of them (killed, timed out or still running). Only completed runs are finished;
every other status is counted and listed as failed, with its status.
Each config is flattened to dotted keys (``criteria.name``, ``space``, ``seed``, ``samples.seed``, ...);
``<node>._target_`` values are shortened to the class name, which is also the value of ``<node>`` (``solver``,
``generator``). Rows and columns group the finished runs by the chosen keys; every cell summarises its runs,
i.e. whatever else varies (seeds, worlds; the header names those keys): ``--stat mean`` gives mean ± sample
std (n - 1), ``--stat median`` gives median [min, max], so a sweep over worlds shows its worst case too,
and k/n for a 0/1 metric (``gt/pass``: the pass rate).

  ice-report outputs/multirun/2026-11-27_12-00-00 --rows criteria.name --cols solver
  ice-report outputs/multirun/* --rows criteria.name,space --cols none --metrics gt/purity_mean,eval/gain
  ice-report outputs/worlds/<time> --rows criteria.name --cols experiment_kind --stat median

Writes report.md (also printed), report.csv (one line per cell: n, mean and std of every metric), runs.csv
(one line per run: the keys that vary and the metrics), failures.csv and report.tex (booktabs) to --out
(default: the first folder). With --cols none the columns are the metrics; otherwise one table per metric.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from ice_exp.records import COMPLETED

DEFAULT_METRICS = ["gt/principal_angle_max_deg", "gt/purity_mean", "gt/dim_found", "eval/gain", "time/discovery_s"]
FORMATS = ("md", "csv", "tex")
Key = tuple[str, ...]


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {dotted key: scalar}; lists as compact JSON; ``_target_`` shortened to the class name."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out.update(flatten(v, key))
        if prefix and isinstance(node.get("_target_"), str):
            out[prefix] = out[f"{prefix}._target_"]
        return out if out or not prefix else {prefix: "{}"}
    if prefix.endswith("._target_") and isinstance(node, str):
        return {prefix: node.rsplit(".", 1)[-1]}
    if isinstance(node, list):
        return {prefix: json.dumps(node, separators=(",", ":"), default=str)}
    return {prefix: node}


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_run(path: Path) -> dict[str, Any] | None:
    """{'path', 'config' (flat), 'status', 'metrics' (completed runs) | None, 'failure' | None}, or None for
    a folder that is no run."""
    config_file = next((f for f in (path / "config_resolved.yaml", path / ".hydra" / "config.yaml") if f.is_file()), None)
    if config_file is None:
        return None
    run: dict[str, Any] = {"path": path, "config": flatten(yaml.safe_load(config_file.read_text()) or {}),
                           "status": "unfinished", "metrics": None, "failure": None}
    try:
        failure, metrics, info = (_json(path / name) for name in ("failure.json", "metrics.json", "run_info.json"))
    except json.JSONDecodeError as error:  # a job killed while writing
        run["status"], run["failure"] = "unreadable", {"error_type": "Unreadable", "message": str(error)}
        return run
    recorded = (metrics or {}).get("status") or (info or {}).get("status")
    if failure is not None:
        run["status"], run["failure"] = recorded if recorded and recorded.startswith("failed") else "failed", failure
    elif metrics is not None and recorded in (None, COMPLETED):
        run["status"], run["metrics"] = COMPLETED, metrics
    elif recorded is not None and recorded != COMPLETED:
        error = (metrics or {}).get("error") or (info or {}).get("error") or "stopped before the end (killed or still running)"
        run["status"], run["failure"] = recorded, {"error_type": recorded, "message": error}
    else:
        run["failure"] = {"error_type": "Unfinished",
                          "message": "no metrics.json nor failure.json (killed, timed out or still running)"}
    return run


def find_runs(folders: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            if "metrics.json" in files or "failure.json" in files or "config_resolved.yaml" in files:
                run = load_run(Path(root))
                if run is not None:
                    runs.append(run)
                    dirs.clear()  # nothing below a run folder is another run
                    continue
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "wandb")
    return runs


def _order(value: Any) -> tuple[int, Any]:
    try:
        return (0, float(value)) if not isinstance(value, bool) else (1, str(value))
    except (TypeError, ValueError):
        return (1, str(value))


def _number(value: Any) -> float | None:
    """A finite number, else None: a NaN (e.g. the purity of a run that found no direction) is left out of
    the statistics, the run still counts in n and in rates such as gt/pass."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def summarise(runs: list[dict[str, Any]], rows: list[str], col: str | None, metrics: list[str],
              stat: str = "mean") -> dict[str, Any]:
    """Cells keyed by (row values, column value): n, failed, and mean, std, median, min, max per metric; the
    keys that vary inside a cell (what the statistics are taken over); ``stat``, the one the tables show."""
    cells: dict[tuple[Key, str], list[dict[str, Any]]] = {}
    for run in runs:
        key = (tuple(str(run["config"].get(k, "-")) for k in rows), str(run["config"].get(col, "-")) if col else "")
        cells.setdefault(key, []).append(run)
    table: dict[tuple[Key, str], dict[str, Any]] = {}
    over: set[str] = set()
    for key, members in cells.items():
        done = [r for r in members if r["metrics"] is not None]
        stats = {}
        for m in metrics:
            values = [v for v in (_number(r["metrics"].get(m)) for r in done) if v is not None]
            if values:
                stats[m] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                            "n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values),
                            "count": sum(values) if set(values) <= {0.0, 1.0} else None}  # a 0/1 metric: how many 1s
        table[key] = {"n": len(done), "failed": len(members) - len(done), "stats": stats}
        all_keys = set().union(*(r["config"] for r in done))
        over |= {k for k in all_keys if len({json.dumps(r["config"].get(k), default=str) for r in done}) > 1}
    return {"cells": table, "rows": sorted({k[0] for k in cells}, key=lambda t: [_order(v) for v in t]),
            "cols": sorted({k[1] for k in cells}, key=_order), "over": sorted(over), "stat": stat}


def fmt(x: float) -> str:
    if math.isfinite(x) and x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.3g}"


STATS = ("mean", "median")  # what a table cell shows: mean ± std, or median [min, max]
CSV_STATS = ("mean", "std", "median", "min", "max")  # report.csv has them all


def cell_text(cell: dict[str, Any] | None, metric: str, pm: str, stat: str = "mean") -> str:
    """'mean ± std' or 'median [min, max]' (one value alone when the cell has one run)."""
    if cell is None:
        return "-"
    st = cell["stats"].get(metric)
    if st is None:
        text = "-"
    elif st["count"] is not None and stat == "median":  # a 0/1 metric (gt/pass): the rate, k of n
        text = f"{fmt(st['count'])}/{st['n']}"
    elif st["n"] == 1:
        text = fmt(st["mean"])
    else:
        text = fmt(st["mean"]) + pm + fmt(st["std"]) if stat == "mean" else f"{fmt(st['median'])} [{fmt(st['min'])}, {fmt(st['max'])}]"
    if cell["failed"]:
        text = "failed" if not cell["n"] else f"{text} (+{cell['failed']} failed)"
    return text


Table = tuple[str | None, list[str], list[list[str]]]


def tables(summary: dict[str, Any], rows: list[str], col: str | None, metrics: list[str], pm: str) -> list[Table]:
    """(title, header, body) per table: one per metric with a column key, else one with the metrics as columns."""
    cells = summary["cells"]
    if col:
        return [(m, rows + summary["cols"], [list(r) + [cell_text(cells.get((r, c)), m, pm, summary["stat"]) for c in summary["cols"]]
                                             for r in summary["rows"]]) for m in metrics]
    return [(None, rows + metrics, [list(r) + [cell_text(cells.get((r, "")), m, pm, summary["stat"]) for m in metrics] for r in summary["rows"]])]


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(ch, ch) for ch in str(text))


def header_line(runs: list[dict[str, Any]], summary: dict[str, Any], rows: list[str], col: str | None) -> str:
    failed = sum(r["metrics"] is None for r in runs)
    counts = sorted({c["n"] for c in summary["cells"].values() if c["n"]}) or [0]
    per_cell = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return (f"{len(runs)} runs ({len(runs) - failed} finished, {failed} failed); rows: {', '.join(rows)}; "
            f"columns: {col or 'metrics'}; {'mean ± std' if summary['stat'] == 'mean' else 'median [min, max]'} "
            f"over {per_cell} run(s) per cell"
            + (f", varying: {', '.join(summary['over'])}" if summary["over"] else ""))


def to_markdown(runs: list[dict[str, Any]], summary: dict[str, Any], rows: list[str], col: str | None,
                metrics: list[str], base: Path) -> str:
    statuses = Counter(r["status"] for r in runs)
    lines = ["# ice-report", "", header_line(runs, summary, rows, col), "",
             "status: " + ", ".join(f"{status} {n}" for status, n in sorted(statuses.items())), ""]
    for title, head, body in tables(summary, rows, col, metrics, " ± "):
        if title:
            lines += [f"## {title}", ""]
        lines += ["| " + " | ".join(map(_md_escape, head)) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(map(_md_escape, r)) + " |" for r in body] + [""]
    failures = [r for r in runs if r["metrics"] is None]
    if failures:
        lines += ["## Failures", "", "| run | status | error |", "|---|---|---|"]
        for r in failures:
            message = f"{r['failure'].get('error_type', 'Error')}: {r['failure'].get('message', '')}"
            lines.append(f"| {_md_escape(_rel(r['path'], base))} | {_md_escape(r['status'])} | {_md_escape(message[:300])} |")
        lines.append("")
    return "\n".join(lines)


def to_latex(runs: list[dict[str, Any]], summary: dict[str, Any], rows: list[str], col: str | None, metrics: list[str]) -> str:
    pm = "\x00"  # stands for ± through the escaping
    tex = lambda text: latex_escape(text).replace(pm, " $\\pm$ ")  # noqa: E731
    out = [f"% ice-report: {header_line(runs, summary, rows, col)}", "% needs \\usepackage{booktabs}"]
    for title, head, body in tables(summary, rows, col, metrics, pm):
        over = f" over {', '.join(summary['over'])}" if summary["over"] else ""
        shown = f"mean{pm}std" if summary["stat"] == "mean" else "median [min, max]"
        caption = (f"{title} " if title else "") + f"({shown}{over})"
        out += ["\\begin{table}[t]", "\\centering", f"\\caption{{{tex(caption)}}}",
                f"\\begin{{tabular}}{{{'l' * len(rows)}{'c' * (len(head) - len(rows))}}}", "\\toprule",
                " & ".join(map(tex, head)) + " \\\\", "\\midrule"]
        out += [" & ".join(map(tex, r)) + " \\\\" for r in body]
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def write_csvs(out: Path, runs: list[dict[str, Any]], summary: dict[str, Any], rows: list[str], col: str | None,
               metrics: list[str], base: Path) -> None:
    with open(out / "report.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(rows + ([col] if col else []) + ["n", "failed"] + [f"{m} {s}" for m in metrics for s in CSV_STATS])
        for r in summary["rows"]:
            for c in summary["cols"]:
                cell = summary["cells"].get((r, c))
                if cell is not None:
                    stats = [cell["stats"][m][s] if m in cell["stats"] else "" for m in metrics for s in CSV_STATS]
                    w.writerow(list(r) + ([c] if col else []) + [cell["n"], cell["failed"]]
                               + [repr(x) if isinstance(x, float) else x for x in stats])
    varying = sorted(set(rows + ([col] if col else []) + summary["over"]))
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "status"] + varying + metrics)
        for run in runs:
            values = [(run["metrics"] or {}).get(m, "") for m in metrics]
            w.writerow([_rel(run["path"], base), run["status"]]
                       + [run["config"].get(k, "") for k in varying] + [repr(v) if isinstance(v, float) else v for v in values])
    with open(out / "failures.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "error_type", "message", "overrides"])
        for run in runs:
            if run["failure"] is not None:
                w.writerow([_rel(run["path"], base), run["failure"].get("error_type", ""), run["failure"].get("message", ""),
                            " ".join(run["failure"].get("overrides") or [])])


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ice-report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("folders", nargs="+", type=Path, help="sweep folders (outputs/multirun/<time>) or run folders")
    p.add_argument("--rows", default="criteria.name", help="comma-separated config keys of the rows (default: criteria.name)")
    p.add_argument("--cols", default="solver", help="config key of the columns, or 'none' for metrics as columns (default: solver)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metric keys of metrics.json")
    p.add_argument("--out", type=Path, default=None, help="folder for the report files (default: the first folder)")
    p.add_argument("--format", default=",".join(FORMATS), help="comma-separated subset of md,csv,tex")
    p.add_argument("--stat", default="mean", choices=STATS, help="cells: mean ± std (default) or median [min, max]")
    args = p.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        p.error(f"not a folder: {', '.join(missing)}")
    formats = _list(args.format)
    if set(formats) - set(FORMATS):
        p.error(f"--format: unknown {sorted(set(formats) - set(FORMATS))}; allowed values: {', '.join(FORMATS)}")
    rows, metrics = _list(args.rows), _list(args.metrics)
    col = None if args.cols.strip().lower() in ("", "none") else args.cols.strip()
    runs = find_runs(args.folders)
    if not runs:
        print(f"ice-report: no run folders (config_resolved.yaml + metrics.json / failure.json) under "
              f"{', '.join(map(str, args.folders))}", file=sys.stderr)
        return 1
    known = set().union(*(r["config"] for r in runs))
    unknown = [k for k in rows + ([col] if col else []) if k not in known]
    if unknown:
        varying = sorted(k for k in known if len({json.dumps(r["config"].get(k), default=str) for r in runs}) > 1)
        p.error(f"no run has the key(s) {', '.join(unknown)}; keys that vary across these runs: {', '.join(varying) or 'none'}")
    for m in metrics:
        if not any(m in (r["metrics"] or {}) for r in runs):
            print(f"ice-report: warning: no run has the metric {m!r}", file=sys.stderr)
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(runs, rows, col, metrics, args.stat)
    markdown = to_markdown(runs, summary, rows, col, metrics, args.folders[0])
    if "md" in formats:
        (out / "report.md").write_text(markdown)
    if "csv" in formats:
        write_csvs(out, runs, summary, rows, col, metrics, args.folders[0])
    if "tex" in formats:
        (out / "report.tex").write_text(to_latex(runs, summary, rows, col, metrics))
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

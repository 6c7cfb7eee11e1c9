"""The report table of ``ice-report`` (ice_exp/apps/report.py, whose docstring says what it shows): run
folders found and read (config flattened to dotted keys, status by ice_exp.run.records), grouped into
cells by the chosen keys, each cell summarised over whatever else varies, and written as markdown, CSV
and LaTeX."""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ice_exp.common.tables import MISSING, latex, markdown, text, write_csv
from ice_exp.run.records import read_status
from ice_exp.run.sweeps import job_order

DEFAULT_METRICS = ["gt/pass", "gt/principal_angle_max_deg", "gt/purity_mean", "gt/coverage_mean", "gt/dim_found", "eval/gain",
                   "counterfactual/flip_rate", "time/discovery_s"]  # those no run has are left out, silently
FILES = {"md": ["report.md"], "csv": ["report.csv", "runs.csv", "failures.csv"], "tex": ["report.tex"]}  # per --format
FORMATS = tuple(FILES)
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


def load_run(path: Path) -> dict[str, Any] | None:
    """{'path', 'config' (flat), 'status', 'metrics' (completed runs) | None, 'failure' | None}, or None for
    a folder that is no run."""
    config_file = next((f for f in (path / "config_resolved.yaml", path / ".hydra" / "config.yaml") if f.is_file()), None)
    if config_file is None:
        return None
    record = read_status(path)
    metrics = record.metrics
    if metrics and metrics.get("gt/dim_found") == 0:  # an empty subspace has no angle (metrics.json records 90°)
        metrics = {**metrics, "gt/principal_angle_max_deg": math.nan}
    return {"path": path, "config": flatten(yaml.safe_load(config_file.read_text()) or {}), "status": record.status,
            "metrics": metrics, "failure": record.failure}


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
            dirs[:] = sorted((d for d in dirs if not d.startswith(".") and d != "wandb"), key=job_order)
    return runs


def _numeric(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def _number(value: Any) -> float:
    """A finite number, else NaN: a NaN (e.g. the purity of a run that found no direction) is left out of
    the statistics, the run still counts in n and in rates such as gt/pass."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else math.nan


SHOWN = {"mean": "mean ± std", "median": "median [min, max]"}  # --stat: what a table cell shows
CSV_STATS = ("mean", "std", "median", "min", "max")  # report.csv has them all


def summarise(runs: list[dict[str, Any]], keys: list[str], metrics: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """One row per cell, indexed by the values of ``keys`` ('-' where a run lacks the key): ``n`` (finished
    runs), ``failed``, and per metric ``<metric> <stat>`` for CSV_STATS (std with n - 1, empty for one value),
    ``<metric> values`` (how many) and ``<metric> ones`` (how many 1s of a metric that is 0/1 in every run, else NaN), over the
    metric's finite values; and the config keys that vary inside a cell (what the statistics are taken over)."""
    cell = [pd.Series([str(r["config"].get(k, "-")) for r in runs], name=k) for k in keys]
    finished = pd.Series([r["metrics"] is not None for r in runs])
    values = pd.DataFrame([[_number((r["metrics"] or {}).get(m)) for m in metrics] for r in runs], columns=metrics)
    grouped = values.groupby(cell)
    stats = grouped.agg([*CSV_STATS, "count"])
    stats.columns = [f"{m} {'values' if s == 'count' else s}" for m, s in stats.columns]
    rates = [m for m in metrics if values[m].dropna().isin([0.0, 1.0]).all()]  # 0/1 in every run, not in one cell only
    ones = grouped.agg(lambda s: s.sum() if s.name in rates else math.nan).add_suffix(" ones")
    counts = finished.groupby(cell).agg(n="sum", runs="size")
    cells = pd.concat([counts["n"], (counts["runs"] - counts["n"]).rename("failed"), stats, ones], axis=1)
    configs = pd.DataFrame([{k: json.dumps(v, default=str) for k, v in r["config"].items()} for r in runs])
    spread = configs[finished].groupby([c[finished] for c in cell]).nunique(dropna=False)
    cells.index = pd.MultiIndex.from_tuples([k if isinstance(k, tuple) else (k,) for k in cells.index], names=keys)
    in_sweep_order = list(dict.fromkeys(tuple(str(r["config"].get(k, "-")) for k in keys) for r in runs))
    return cells.loc[in_sweep_order], sorted(spread.columns[(spread > 1).any()])


def cell_text(cell: dict[str, Any] | None, metric: str, stat: str) -> str:
    """'mean ± std' or 'median [min, max]' (one value alone when the cell has one), k/n for a 0/1 metric
    with --stat median; '(+k failed)' when some of its runs failed."""
    if cell is None:
        return MISSING
    get = lambda s: cell[f"{metric} {s}"]  # noqa: E731
    if not get("values"):
        shown = MISSING
    elif stat == "median" and not math.isnan(get("ones")):  # a 0/1 metric (gt/pass): the rate, k of n
        shown = f"{text(get('ones'))}/{get('values')}"
    elif get("values") == 1:
        shown = text(get("mean"))
    elif stat == "mean":
        shown = f"{text(get('mean'))} ± {text(get('std'))}"
    else:
        shown = f"{text(get('median'))} [{text(get('min'))}, {text(get('max'))}]"
    if cell["failed"]:
        shown = "failed" if not cell["n"] else f"{shown} (+{cell['failed']} failed)"
    return shown


def metric_tables(cells: pd.DataFrame, rows: list[str], col: str | None, metrics: list[str], stat: str
                  ) -> list[tuple[str | None, pd.DataFrame]]:
    """(title, table) per metric with a column key (its values as columns), else one with the metrics as columns."""
    found = cells.to_dict("index")  # {cell key (a tuple): {column: value}}
    row_keys = list(dict.fromkeys(key[: len(rows)] for key in found))
    if not col:
        return [(None, pd.DataFrame([[*key, *(cell_text(found[key], m, stat) for m in metrics)] for key in row_keys],
                                    columns=rows + metrics))]
    columns = list(dict.fromkeys(key[-1] for key in found))  # in sweep order, as the rows
    header = [f"{col}={c}" if _numeric(c) else c for c in columns]  # "seed=0", not a bare "0"
    return [(m, pd.DataFrame([[*key, *(cell_text(found.get((*key, c)), m, stat) for c in columns)] for key in row_keys],
                             columns=rows + header)) for m in metrics]


def header_line(runs: list[dict[str, Any]], cells: pd.DataFrame, over: list[str], rows: list[str], col: str | None,
                stat: str) -> str:
    failed = sum(r["metrics"] is None for r in runs)
    counts = sorted(set(cells["n"][cells["n"] > 0])) or [0]
    per_cell = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return (f"{len(runs)} run{'s' * (len(runs) != 1)} ({len(runs) - failed} finished, {failed} failed); rows: {', '.join(rows)}; "
            f"columns: {col or 'metrics'}; {SHOWN[stat]} over {per_cell} run(s) per cell"
            + (f", varying: {', '.join(over)}" if over else ""))


def failures(runs: list[dict[str, Any]], base: Path) -> pd.DataFrame:
    """One row per run that did not finish: its folder, status, error type, message and overrides."""
    return pd.DataFrame([{"run": _rel(r["path"], base), "status": r["status"], "error_type": r["failure"].get("error_type", ""),
                          "message": r["failure"].get("message", ""), "overrides": " ".join(r["failure"].get("overrides") or [])}
                         for r in runs if r["metrics"] is None], columns=["run", "status", "error_type", "message", "overrides"])


def to_markdown(runs: list[dict[str, Any]], header: str, tables_: list[tuple[str | None, pd.DataFrame]], base: Path) -> str:
    statuses = Counter(r["status"] for r in runs)
    lines = ["# ice-report", "", header, "",
             "status: " + ", ".join(f"{status} {n}" for status, n in sorted(statuses.items())), ""]
    for title, table in tables_:
        lines += ([f"## {title}", ""] if title else []) + [markdown(table), ""]
    failed = failures(runs, base)
    if len(failed):
        failed["error"] = (failed["error_type"].replace("", "Error") + ": " + failed["message"]).str[:300]
        lines += ["## Failures", "", markdown(failed[["run", "status", "error"]]), ""]
    return "\n".join(lines)


def to_latex(header: str, tables_: list[tuple[str | None, pd.DataFrame]], rows: list[str], over: list[str], stat: str) -> str:
    out = [f"% ice-report: {header}", "% needs \\usepackage{booktabs}"]
    for title, table in tables_:
        caption = (f"{title} " if title else "") + f"({SHOWN[stat]}" + (f" over {', '.join(over)}" if over else "") + ")"
        out.append(latex(table, caption, "l" * len(rows) + "c" * (table.shape[1] - len(rows))))
    return "\n".join(out)


def _rel(path: Path, base: Path) -> str:
    """The run's folder below ``base``; its own name when it is ``base`` (a run folder given directly)."""
    try:
        return str(path.resolve().relative_to(base.resolve())) if path.resolve() != base.resolve() else path.resolve().name
    except ValueError:
        return str(path)


def write_csvs(out: Path, runs: list[dict[str, Any]], cells: pd.DataFrame, over: list[str], keys: list[str],
               metrics: list[str], base: Path) -> None:
    """report.csv (one line per cell), runs.csv (one per run: the keys that vary and the metrics), failures.csv."""
    write_csv(cells.reset_index()[keys + ["n", "failed"] + [f"{m} {s}" for m in metrics for s in CSV_STATS]],
              out / "report.csv")
    varying = sorted(set(keys + over))
    write_csv(pd.DataFrame([[_rel(r["path"], base), r["status"], *(r["config"].get(k, "") for k in varying),
                             *((r["metrics"] or {}).get(m, "") for m in metrics)] for r in runs],
                           columns=["run", "status", *varying, *metrics]), out / "runs.csv")
    write_csv(failures(runs, base)[["run", "error_type", "message", "overrides"]], out / "failures.csv")

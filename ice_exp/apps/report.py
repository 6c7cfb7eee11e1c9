"""``ice-report <sweep or run folders...>``: every run's config and metrics in one table, from local files.

A run folder is one with ``config_resolved.yaml`` (or ``.hydra/config.yaml``). Its status is the ``status`` of
its metrics.json / run_info.json (``completed``, ``running``, ``failed:<stage>``; runs older than the status
with a metrics.json count as completed), ``failed`` with a ``failure.json`` (written by ``ice-exp -m``), or
``unfinished`` without any of them (killed, timed out or still running). Only completed runs are finished;
every other status is counted and listed as failed, with its status.
Each config is flattened to dotted keys (``criteria.name``, ``space``, ``seed``, ``samples.seed``, ...);
``<node>._target_`` values are shortened to the class name, which is also the value of ``<node>`` (``solver``,
``generator``). Rows and columns group the finished runs by the chosen keys, in sweep order (job number; a
numeric column value is headed ``<key>=<value>``); every cell summarises its runs,
i.e. whatever else varies (seeds, worlds; the header names those keys): ``--stat mean`` gives mean ± sample
std (n - 1; one run shows its value alone), ``--stat median`` gives median [min, max], so a sweep over worlds
shows its worst case too, and k/n for a 0/1 metric (``gt/pass``: the pass rate). An empty subspace has no
angle (``–``).

  ice-report outputs/multirun/2026-11-27_12-00-00 --rows criteria.name --cols solver
  ice-report outputs/multirun/* --rows criteria.name,space --cols none --metrics gt/purity_mean,eval/gain
  ice-report outputs/worlds/<time> --rows criteria.name --cols experiment_kind --stat median

Writes report.md (also printed), report.csv (one line per cell: n, mean and std of every metric), runs.csv
(one line per run: the keys that vary and the metrics), failures.csv and report.tex (booktabs) to --out
(default: the first folder), and says so on stderr. With --cols none the columns are the metrics; otherwise one
table per metric.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ice_exp.run.report_table import (
    DEFAULT_METRICS,
    FILES,
    FORMATS,
    SHOWN,
    find_runs,
    header_line,
    metric_tables,
    summarise,
    to_latex,
    to_markdown,
    write_csvs,
)


def _list(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ice-report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("folders", nargs="+", type=Path, help="sweep folders (outputs/multirun/<time>) or run folders")
    p.add_argument("--rows", default="criteria.name", help="comma-separated config keys of the rows (default: criteria.name)")
    p.add_argument("--cols", default="solver", help="config key of the columns, or 'none' for metrics as columns (default: solver)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated metric keys of metrics.json (default: {','.join(DEFAULT_METRICS)}, those the runs have)")
    p.add_argument("--out", type=Path, default=None, help="folder for the report files (default: the first folder)")
    p.add_argument("--format", default=",".join(FORMATS), help="comma-separated subset of md,csv,tex")
    p.add_argument("--stat", default="mean", choices=SHOWN, help="cells: mean ± std (default) or median [min, max]")
    args = p.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        p.error(f"not a folder: {', '.join(missing)}")
    formats = _list(args.format)
    if set(formats) - set(FORMATS):
        p.error(f"--format: unknown {sorted(set(formats) - set(FORMATS))}; allowed values: {', '.join(FORMATS)}")
    rows, metrics = _list(args.rows), _list(args.metrics)
    col = None if args.cols.strip().lower() in ("", "none") else args.cols.strip()
    if not rows:
        p.error("--rows: give at least one config key")
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
    absent = [m for m in metrics if not any(m in (r["metrics"] or {}) for r in runs)]
    if args.metrics == p.get_default("metrics"):  # the defaults a sweep did not record (no truth, no explanation)
        metrics = [m for m in metrics if m not in absent]
    else:
        for m in absent:
            print(f"ice-report: warning: no run has the metric {m!r}", file=sys.stderr)
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    keys = rows + ([col] if col else [])
    cells, over = summarise(runs, keys, metrics)
    shown = metric_tables(cells, rows, col, metrics, args.stat)
    header = header_line(runs, cells, over, rows, col, args.stat)
    report = to_markdown(runs, header, shown, args.folders[0])
    if "md" in formats:
        (out / "report.md").write_text(report)
    if "csv" in formats:
        write_csvs(out, runs, cells, over, keys, metrics, args.folders[0])
    if "tex" in formats:
        (out / "report.tex").write_text(to_latex(header, shown, rows, over, args.stat))
    print(report)
    written = [name for fmt, names in FILES.items() if fmt in formats for name in names]
    print(f"ice-report: wrote {', '.join(written)} to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What tasks.py and glue.py share: their command line, one row per (task, world) kept in a .jsonl file as it
is measured (a rerun reads it back instead of measuring again), and the median [worst] cells of their tables."""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ice_exp.config.task import task_names

Row = dict[str, Any]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--analyzers", required=True, help="ice-exp overrides selecting the trained parser and FAN")
    p.add_argument("--worlds", default="10-12", help="first-last generator.seed (never a training world)")
    p.add_argument("--tasks", nargs="*", default=None, help="conf/task names (default: all seven)")
    p.add_argument("--overrides", default="", help="further ice-exp overrides for every run")
    p.add_argument("--out", type=Path, default=None,
                   help="<out>.jsonl gets each row as it is done (a rerun reads the rows there), <out>.md the table")
    return p


def run_rows(args: argparse.Namespace, measure: Callable[[str, int, list[str], list[str]], Row],
             table: Callable[[list[Row]], str], complete: Callable[[Row], bool] = lambda row: True) -> list[Row]:
    """``measure(task, world, analyzers, overrides)`` for every task and world of ``args``, except the rows
    already in <out>.jsonl (the last line per task and world wins) that are ``complete``; prints each row and
    the table."""
    first, last = (int(x) for x in args.worlds.split("-"))
    rows_file = args.out.with_suffix(".jsonl") if args.out is not None else None
    lines = rows_file.read_text().splitlines() if rows_file is not None and rows_file.is_file() else []
    done = {(r["task"], r["world"]): r for r in map(json.loads, lines)}
    analyzers, overrides = shlex.split(args.analyzers), shlex.split(args.overrides)
    rows = []
    for task in args.tasks or task_names():
        for world in range(first, last + 1):
            row = done.get((task, world))
            if row is None or not complete(row):
                row = {"task": task, "world": world, **measure(task, world, analyzers, overrides)}
                if rows_file is not None:
                    with rows_file.open("a") as f:
                        f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(table(rows))
    if args.out is not None:
        args.out.with_suffix(".md").write_text(table(rows))
    return rows


def median_worst(values: list[float], worst: Callable[[list[float]], float] = max) -> str:
    """``median [worst]`` over the worlds, as every toyface claim is reported."""
    return f"{statistics.median(values):.3g} [{worst(values):.3g}]"

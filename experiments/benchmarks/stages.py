"""Where one run's time goes: a py-spy raw profile (``py-spy record -f raw``) as stage × share of samples.

    py-spy record -r 20 -f raw -o profile.txt -- python -m ice_exp experiment=toyface/mouth_shape ...
    python -m experiments.benchmarks.stages profile.txt

A sample belongs to the first stage (in STAGES order) whose marker appears in its stack; ``render``
(toyface's renderer, wherever it is called) is reported across stages as well.
"""
from __future__ import annotations

import argparse
from collections import Counter

STAGES = (  # (stage, a substring of a stack frame)
    ("accumulate", "ice_exp/engine/accumulate.py"),
    ("evaluate: gain and leakage", "evaluate (ice_exp/run/evaluation.py"),
    ("evaluate: ground truth", "ground_truth (ice_exp/run/evaluation.py"),
    ("solve", "ice_exp/solvers/"),
    ("write", "write_discovery (ice_exp/run/discovery.py"),
    ("build", "build (ice_exp/run/build.py"),
    ("imports", "_find_and_load"),
)


def shares(lines: list[str]) -> tuple[Counter, int, int]:
    """(samples per stage, samples inside the toyface renderer, all samples) of py-spy raw lines."""
    stages: Counter = Counter()
    render = total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        render += n * ("ice_exp/generators/toyface/render.py" in stack)
        stages[next((name for name, marker in STAGES if marker in stack), "other")] += n
    return stages, render, total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="+", help="py-spy raw files; one column each")
    args = parser.parse_args(argv)
    results = [shares(open(path).readlines()) for path in args.profiles]
    print("| stage | " + " | ".join(args.profiles) + " |\n|---|" + "---|" * len(results))
    for name in [n for n, _ in STAGES] + ["other"]:
        print(f"| {name} | " + " | ".join(f"{s[name] / t:.0%} ({s[name]})" for s, _, t in results) + " |")
    print("| toyface render (in any stage) | " + " | ".join(f"{r / t:.0%} ({r})" for _, r, t in results) + " |")
    print("| all samples | " + " | ".join(str(t) for _, _, t in results) + " |")


if __name__ == "__main__":
    main()

"""CPU benchmark of the JᵀJ engines against the seed's loop, side by side in one run (not a timed test).

    python -m experiments.benchmarks.cpu [--loop-rows N] [--engines loop vjp jvp auto randomised]
                                         [--tables render engines runs analyzers protocol]

Cases (space S, one sample):
- toyface 64 px, masked_pixels outside the dilated mouth at 32 px: 3,072 outputs, D = 192 (ratio 1e-3);
- a small random StyleGAN2 (conf/generator/stylegan2_random.yaml: 32 px), the high-frequency part of the
  image at 32 px: 3,072 outputs (ratio 1e-3).
``runs``: the recommended toyface run (experiment=toyface/mouth_shape) whole, cold and warm; ``analyzers``:
the same with network analyzers (random weights, the trained ones' shapes); ``protocol``: the seven
recommended tasks of one world; each with today's engine side by side with the per-criterion path
(experiments/benchmarks/runs.py).
Set OMP_NUM_THREADS to fix the thread count; the table states it.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch
from omegaconf import OmegaConf

from experiments.benchmarks.common import ENGINES, Case, bench, markdown
from experiments.benchmarks.runs import ANALYZERS, process_rows, protocol_rows, run_rows
from ice_exp.analyzers import Analyzers
from ice_exp.config import CONF_DIR
from ice_exp.criteria.terms import build_terms
from ice_exp.engine.grams import term_fn
from ice_exp.generators.stylegan2 import build_stylegan2
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.world.oracles import OracleLandmarker, OracleParser


def case(name: str, generator: torch.nn.Module, criterion: dict, part: str, ratio: float, analyzers: Analyzers) -> Case:
    terms = build_terms({"name": name, "activate": {"criterion": criterion, "part": part}}, analyzers)
    z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(8))
    u = generator.encode(z, "s")[0].detach()
    return Case(name, term_fn(generator, terms, u, "s", terms.activate.name), u, ratio)


def cases() -> list[Case]:
    oracles = Analyzers(parser=OracleParser(), landmarker=OracleLandmarker())
    sg2 = OmegaConf.load(f"{CONF_DIR}/generator/stylegan2_random.yaml")
    sg2 = build_stylegan2(**{k: v for k, v in OmegaConf.to_container(sg2).items() if k != "_target_"})
    return [
        case("toyface 64px, masked_pixels outside (3072 x 192)", ToyFaceGenerator(resolution=64),
             {"_target_": "ice_exp.criteria.MaskedPixels", "_partial_": True, "regions": ["mouth_all"], "morphology": "dilate",
              "ks_ratio": 0.1, "size": 32},
             "outside", 1e-3, oracles),
        case(f"random StyleGAN2 {sg2.resolution}px, high_frequency (3072 x {sg2.s_dim})", sg2,
             {"_target_": "ice_exp.criteria.HighFrequency", "cutoff": 8, "size": 32}, "high", 1e-3, Analyzers()),
    ]


@torch.no_grad()
def render_table(batch: int = 16, repeats: int = 5) -> str:
    """toyface rendering time for a batch of ``batch`` faces at several sizes (median of ``repeats``)."""
    lines = [f"| toyface render, batch {batch} | median ms | images/s |", "|---|---|---|"]
    for resolution in (64, 128, 256):
        g = ToyFaceGenerator(resolution=resolution)
        s = g.encode(torch.randn(batch, g.z_dim, generator=torch.Generator().manual_seed(0)), "s")
        g.synthesis(s)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            g.synthesis(s)
            times.append(time.perf_counter() - start)
        median = sorted(times)[repeats // 2]
        lines.append(f"| {resolution} px | {median * 1e3:.0f} | {batch / median:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", default=["loop", "vjp", "jvp", "auto", "randomised"], choices=ENGINES)
    parser.add_argument("--loop-rows", type=int, default=None, help="run the loop on this many rows only and extrapolate")
    parser.add_argument("--rank", type=int, default=32, help="initial rank of the randomised engine")
    parser.add_argument("--tables", nargs="+", default=["render", "engines", "runs", "process", "analyzers", "protocol"],
                        choices=["render", "engines", "runs", "process", "analyzers", "protocol"])
    args = parser.parse_args(argv)
    header = (f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} torch thread(s)")
    print(header + "\n", flush=True)
    if "render" in args.tables:
        print(render_table() + "\n", flush=True)
    if "engines" in args.tables:
        rows = [row for c in cases() for row in bench(c, args.engines, rank=args.rank, loop_subset=args.loop_rows)]
        print(markdown(rows) + "\n", flush=True)
    if "runs" in args.tables:
        print(markdown(run_rows()) + "\n", flush=True)
    if "process" in args.tables:
        print(markdown(process_rows()) + "\n", flush=True)
    if "analyzers" in args.tables:
        print(markdown(run_rows(ANALYZERS, kinds=("off",))) + "\n", flush=True)
    if "protocol" in args.tables:
        print(markdown(protocol_rows()))


if __name__ == "__main__":
    main()

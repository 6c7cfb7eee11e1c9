"""GPU benchmark: the seed's face_boundary JᵀJ on the full StyleGAN2-1024 config-f, per engine (not a test).

    python -m experiments.benchmarks.gpu [--engines ...] [--loop-rows 32] [--rank 256] [--out table.md]
    python -m experiments.benchmarks.gpu --tiny      # the same code path on CPU at a tiny size (tests run it)

Installs and downloads nothing: every network has seeded random weights (timing does not depend on the
weights; the spectra do, so the randomised engine's pass count on trained weights will differ). Setup at
the seed's sizes (docs/method.md): StyleGAN2 1024 config-f, space S (D = 9,088), FAN-4 at 256 px (random
weights), face_boundary = activate jaw landmarks 0–16 (34 rows), suppress the other 51 landmarks (102
rows, ratio 1e-2) and the landmark texture of labels 1–18 eroded 0.05 at 64 px with 2,073 points (6,219
rows, ratio 3e-3): 6,355 rows. The parser is only used without gradients (the texture mask), so a fixed
ellipse stands in for BiSeNet.

Per engine: wall time of the whole face_boundary JᵀJ at one sample, passes, passes/s, peak CUDA memory,
the FLOP floor of its passes (FlopCounterMode on one forward of generator + criterion, ×2 per pass: a
reverse or forward-mode pass costs about two forwards; the issue's 2.5 PFLOP for 6,355 rows uses the same
rule) and that floor's time at ``--peak-tflops``, the error of each suppress term's significant eigenspace
and of the final ICE subspace (largest principal angle, degrees) against exact fp32. ``loop`` runs on the
first ``--loop-rows`` rows of each criterion; its time is extrapolated linearly and labelled so.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from experiments.benchmarks.common import loop_rows, markdown, measure
from ice_exp.analyzers import Analyzers
from ice_exp.analyzers.base import Parser
from ice_exp.analyzers.fan import FANLandmarker
from ice_exp.common.face_parts import REGIONS
from ice_exp.common.linalg import principal_angles, significant_eigenspace
from ice_exp.criteria.terms import Terms, build_terms
from ice_exp.engine.frame import FramePasses
from ice_exp.engine.grams import EXACT, criterion_fns, sample_grams
from ice_exp.generators.base import Frame
from ice_exp.generators.stylegan2 import build_stylegan2
from ice_exp.solvers.base import Problem, SuppressTerm
from ice_exp.solvers.ice import EarlyProjection

ENGINES = ("loop", "vjp", "jvp", "auto", "tf32", "bf16", "randomised", "tf32+randomised")
# auto is vjp here (both criteria have fewer rows than D); jvp (2 x 9,088 passes) is left out by default
DEFAULT_ENGINES = ("loop", "auto", "tf32", "randomised", "tf32+randomised", "bf16")
FULL = dict(resolution=1024, fan_modules=4, fan_size=256, texture_size=64, num_points=2073, sg2={})
TINY = dict(resolution=32, fan_modules=1, fan_size=64, texture_size=16, num_points=16,
            sg2=dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32))


class EllipseParser(Parser):
    """A fixed face-shaped ellipse labelled skin, background around it: stands in for BiSeNet, which the
    texture criterion only calls without gradients to pick its pixels."""

    def forward(self, frame: Frame) -> Tensor:
        b, _, h, w = frame.image.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        inside = ((xs / 0.7) ** 2 + (ys / 0.85) ** 2 < 1).to(frame.image)
        probs = torch.zeros(b, len(REGIONS), h, w, dtype=frame.image.dtype, device=frame.image.device)
        probs[:, REGIONS.index("skin")] = inside.to(frame.image.device)
        probs[:, 0] = 1 - probs[:, REGIONS.index("skin")]
        return probs


def face_boundary(size: dict[str, Any], device: torch.device) -> tuple[torch.nn.Module, Terms, Tensor]:
    """(generator, terms, u in S) of the seed's face_boundary at ``size`` (FULL or TINY)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        generator = build_stylegan2(resolution=size["resolution"], **size["sg2"]).to(device)
        landmarker = FANLandmarker(size["fan_modules"], size["fan_size"]).to(device)
    analyzers = Analyzers(parser=EllipseParser().to(device), landmarker=landmarker)
    landmarks = {"_target_": "ice_exp.criteria.LandmarkGroup", "_partial_": True, "group": "jaw"}
    texture = {"_target_": "ice_exp.criteria.LandmarkTexture", "_partial_": True, "regions": ["head"], "morphology": "erode",
               "ks_ratio": 0.05,
               "size": size["texture_size"], "num_points": size["num_points"], "seed": 0}
    terms = build_terms({"name": "face_boundary", "activate": {"criterion": landmarks, "part": "group"},
                         "suppress": {"other_landmarks": {"criterion": landmarks, "part": "others", "ratio": 1e-2},
                                      "texture": {"criterion": texture, "part": "texture", "ratio": 3e-3}}}, analyzers)
    for criterion in terms.criteria.values():
        criterion.to(device)
    z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(31))  # the seed's z #31 slot
    return generator, terms, generator.encode(z, "s")[0].detach()


def forward_flops(generator: torch.nn.Module, terms: Terms, u: Tensor) -> dict[str, int]:
    """FLOPs of one forward of generator + criterion, per criterion key, and of generator + every criterion
    (``EXACT``: the pass the exact terms share)."""
    frames = FramePasses(generator, terms, u, "s")
    out = {}
    for key, fn in [(key, fn) for key, fn, _ in criterion_fns(generator, terms, u, "s")] + [(EXACT, frames.fn(frames.parts()))]:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            fn(u)
        out[key] = counter.get_total_flops()
    return out


def name_of(criterion_key: str) -> str:
    """The criterion's class name from its key (the JSON of its config)."""
    return json.loads(criterion_key)["_target_"].rsplit(".", 1)[-1]


def run_engine(engine: str, generator: torch.nn.Module, terms: Terms, u: Tensor, rank: int, loop_subset: int
               ) -> tuple[dict[str, Tensor] | float, dict[str, int]]:
    """(the face_boundary Grams, or for the partial loop its extrapolated seconds; passes per criterion
    key or sketched term)."""
    passes: dict[str, int] = {}
    if engine == "loop":
        seconds = 0.0
        for key, fn, sizes in criterion_fns(generator, terms, u, "s"):
            passes[key] = sum(sizes.values())
            seconds += loop_rows(fn, u, min(loop_subset, passes[key]))
        return seconds, passes
    precision = engine.split("+")[0] if engine.startswith(("tf32", "bf16")) else "fp32"
    options = dict(mode=engine if engine in ("vjp", "jvp") else "auto", precision=precision,
                   suppress_rank=rank if engine.endswith("randomised") else None)
    return sample_grams(generator, terms, u, "s", passes=passes, **options), passes


def solve(grams: dict[str, Tensor], terms: Terms) -> Tensor:
    problem = Problem(grams[terms.activate.name], [SuppressTerm(t.name, grams[t.name], t.ratio) for t in terms.suppress])
    return EarlyProjection()(problem).directions


class Reference:
    """The exact fp32 result the error columns compare with: each suppress term's significant eigenspace
    (what the solver keeps out) and the final ICE subspace, computed once."""

    def __init__(self, grams: dict[str, Tensor], terms: Terms) -> None:
        self.terms = terms
        self.spaces = {t.name: significant_eigenspace(grams[t.name], t.ratio) for t in terms.suppress}
        self.subspace = solve(grams, terms)

    def errors(self, grams: dict[str, Tensor]) -> dict[str, float]:
        """Largest principal angle (degrees) of each suppress eigenspace and of the ICE subspace."""
        out = {f"error_{t.name}_deg": float(principal_angles(significant_eigenspace(grams[t.name], t.ratio), self.spaces[t.name]).max())
               for t in self.terms.suppress}
        out["error_subspace_deg"] = float(principal_angles(solve(grams, self.terms), self.subspace).max())
        return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on CPU (what the tests run)")
    parser.add_argument("--engines", nargs="+", default=list(DEFAULT_ENGINES), choices=ENGINES,
                        help="run in this order; the first exact one (vjp, jvp, auto) is the error reference")
    parser.add_argument("--loop-rows", type=int, default=32, help="rows per criterion the loop runs (extrapolated)")
    parser.add_argument("--rank", type=int, default=256, help="initial rank of the randomised engine")
    parser.add_argument("--peak-tflops", type=float, default=67.0, help="fp32 peak of the card (H100 SXM: 67)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip the engines left once this much time has passed")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) and rows (.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("ice_exp.engine.memory").setLevel(logging.DEBUG)  # the chunk sizes the engines chose
    started = time.perf_counter()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    generator, terms, u = face_boundary(TINY if args.tiny else FULL, device)
    flops = forward_flops(generator, terms, u)
    rows_of = {key: sum(sizes.values()) for key, _, sizes in criterion_fns(generator, terms, u, "s")}
    flops_of = lambda key: flops[key] if key in flops else flops[next(t.criterion for t in terms.terms if t.name == key)]  # noqa: E731
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    header = (f"face_boundary JᵀJ, StyleGAN2 {generator.resolution}px (D = {u.numel()}), {sum(rows_of.values())} rows; "
              f"{card}, torch {torch.__version__}; forward {flops[EXACT] / 1e9:.1f} GFLOP, one rendering "
              f"(alone: {', '.join(f'{name_of(k)}: {v / 1e9:.1f}' for k, v in flops.items() if k != EXACT)})")
    print(header, flush=True)

    reference, table = None, []
    for engine in args.engines:
        if time.perf_counter() - started > args.budget_s:
            table.append({"engine": engine, "note": f"skipped: --budget-s {args.budget_s:g} spent"})
            continue
        print(f"{engine}: starting at {time.perf_counter() - started:.0f} s", flush=True)
        try:
            (grams, passes), seconds, peak = measure(lambda: run_engine(engine, generator, terms, u, args.rank, args.loop_rows), device)
        except (RuntimeError, NotImplementedError) as error:  # one failing engine must not lose the others' numbers
            table.append({"engine": engine, "note": f"failed: {type(error).__name__}: {str(error)[:120]}"})
            continue
        row: dict[str, Any] = {"engine": engine, "seconds": seconds, "passes": sum(passes.values()), "peak_mib": peak}
        note = ""
        if isinstance(grams, float):  # the partial loop
            row["seconds"], grams = grams, None
            note = f"loop on {args.loop_rows} rows per criterion, time extrapolated linearly"
        row["passes_per_s"] = row["passes"] / row["seconds"]
        row["flop_floor_pflop"] = sum(2 * p * flops_of(k) for k, p in passes.items()) / 1e15
        row["floor_s"] = row["flop_floor_pflop"] * 1e15 / (args.peak_tflops * 1e12)
        if grams is not None and reference is None and engine in ("vjp", "jvp", "auto"):
            reference = Reference(grams, terms)
        elif grams is not None and reference is not None:
            row.update(reference.errors(grams))
        row["note"] = note
        table.append(row)
        print(f"{engine}: {row['seconds']:.2f} s, {row['passes']} passes", flush=True)
        del grams
        write_table(table, header, args.out)  # after every engine: a run stopped at its time limit keeps the rows so far
    print(write_table(table, header, args.out), flush=True)
    return table


def write_table(table: list[dict[str, Any]], header: str, out: Path | None) -> str:
    """The markdown table, each timed row with its speed-up over the loop; also to ``out`` (.md and .json)."""
    loop = next((r["seconds"] for r in table if r["engine"] == "loop" and "seconds" in r), None)
    for row in table:
        if loop and "seconds" in row:
            row["speedup_vs_loop"] = loop / row["seconds"]
    text = markdown(table, header)
    if out is not None:
        out.write_text(text + "\n")
        out.with_suffix(".json").write_text(json.dumps(table, indent=2))
    return text


if __name__ == "__main__":
    main()

"""The seed's analyzer glue against ours on one task: what each departure does to the run's terms.

``python -m experiments.trained_analyzers.glue --worlds 10-12 --analyzers "analyzer/parser=bisenet
analyzer.parser.path=... analyzer/landmarker=fan analyzer.landmarker.path=..." --out
experiments/trained_analyzers/glue`` runs each task with the seed's settings (``experiment=toyface/seed/<task>``)
in each world; the parser must be a network parser and the landmarker FAN, since the glue keys are theirs.

The run is built three times: ours (``heatmap_mode=relu``, ``mask_mode=image``), FAN decoded as the seed
(``heatmap_mode=seed``), and the seed's whole glue (both ``seed``); each accumulates its Grams over the
run's samples exactly as a run does. Reported (docs/method.md, "The seed's analyzer glue"):

- heatmaps: the FAN's last-stack background on the run's samples (share of negative pixels, negative over
  positive mass, median value over the peak), which decides how far the seed's decoding departs;
- per term that reads the landmarker, ours vs FAN-as-seed: λ_max ratio, the angle between the top
  eigenvectors and, for a suppress term, the largest principal angle between the eigenspaces with
  λ ≥ ratio·λ_max (what the solver keeps out) and their dimensions;
- per parser region of the task, image vs seed masks on the samples: area (share of the image), relative
  change and IoU;
- the largest principal angle between the subspace the run's solver finds with ours and with each of the
  two other builds.

On random weights (``analyzer/parser=bisenet_random analyzer/landmarker=fan_random``) it runs, and is
tested there, but the numbers mean nothing: the masks cover most of the image and the heatmaps are
largely negative. Tasks whose criteria ask for soft masks (``region_colour soft: true``) cannot take the
seed's glue: use their seed settings (``experiment=toyface/seed/...``).
"""
from __future__ import annotations

from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import Tensor

from experiments.trained_analyzers import resumable
from experiments.trained_analyzers.resumable import Row, median_worst
from ice_exp.analyzers.base import Landmarker
from ice_exp.analyzers.fan import FANLandmarker
from ice_exp.common.images import resize
from ice_exp.common.linalg import eigenspace_angle, principal_angles
from ice_exp.config import CONF_DIR
from ice_exp.engine.accumulate import accumulate
from ice_exp.generators.base import Frame
from ice_exp.run.build import Setup, build_setup
from ice_exp.solvers.base import Problem

GLUES = {  # build name -> (analyzer.landmarker.heatmap_mode, analyzer.parser.mask_mode)
    "ours": ("relu", "image"),
    "fan_seed": ("seed", "image"),
    "seed": ("seed", "seed"),
}


def build(overrides: list[str], glue: str) -> tuple[Any, Setup, dict[str, Tensor]]:
    """The run's config, setup and accumulated Grams with one glue."""
    heatmap, mask = GLUES[glue]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", "counterfactual.enabled=false", *overrides,
                                           f"analyzer.landmarker.heatmap_mode={heatmap}", f"analyzer.parser.mask_mode={mask}"])
    setup = build_setup(cfg)
    return cfg, setup, accumulate(setup.sample_grams, setup.z_train)


def frames(setup: Setup) -> Frame:
    with torch.no_grad():
        return setup.generator.decode(setup.generator.encode(setup.z_train, setup.space), setup.space)


def heatmap_background(landmarker: Landmarker, frame: Frame) -> dict[str, float]:
    """Medians over the maps of the FAN's last-stack heatmaps on these frames."""
    if not isinstance(landmarker, FANLandmarker):
        return {}
    with torch.no_grad():
        maps = landmarker.net(resize(frame.image, landmarker.size))[-1].flatten(2).double()  # [B, 68, h*w]
    peak = maps.amax(2)
    return {"negative_pixels": float((maps < 0).double().mean(2).median()),
            "negative_over_positive_mass": float((maps.clamp_max(0).sum(2).abs() / maps.clamp_min(0).sum(2)).median()),
            "median_over_peak": float((maps.median(2).values / peak).median())}


def top(gram: Tensor) -> tuple[float, Tensor]:
    lam, q = torch.linalg.eigh(gram.double())
    return float(lam[-1]), q[:, -1:]


def term_changes(setup: Setup, ours: dict[str, Tensor], other: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """Per term whose criterion reads the landmarker: how its Gram moves from ``ours`` to ``other``."""
    rows = {}
    for term in setup.terms.terms:
        if not any(isinstance(m, Landmarker) for m in setup.terms.criteria[term.criterion].modules()):
            continue
        (lam_a, v_a), (lam_b, v_b) = top(ours[term.name]), top(other[term.name])
        row = {"lambda_max_ratio": lam_b / lam_a, "top_vector_angle_deg": float(principal_angles(v_a, v_b).max())}
        if term.ratio is not None:
            angle, dim_other, dim_ours = eigenspace_angle(other[term.name], ours[term.name], term.ratio)
            row.update(significant_angle_deg=angle, significant_dim_ours=dim_ours, significant_dim_other=dim_other)
        rows[term.name] = row
    return rows


def mask_changes(ours: Setup, seed: Setup, frame: Frame) -> dict[str, dict[str, float]]:
    """Per region spec (regions, morphology, ks_ratio) of the task's criteria: image vs seed masks."""
    rows = {}
    for criterion in ours.terms.criteria.values():
        if not hasattr(criterion, "regions"):
            continue
        spec = (criterion.regions, getattr(criterion, "morphology", "none"), getattr(criterion, "ks_ratio", 0.0))
        with torch.no_grad():
            a, b = (setup.analyzers.parser.region_mask(frame, *spec) for setup in (ours, seed))
        area_a, area_b = float(a.mean()), float(b.mean())
        rows[f"{'+'.join(spec[0])} {spec[1]} {spec[2]:g}"] = {
            "area_image": area_a, "area_seed": area_b, "image_over_seed_area": area_a / area_b - 1,
            "iou": float((a * b).sum() / (a + b - a * b).sum())}
    return rows


def subspace(cfg: Any, setup: Setup, grams: dict[str, Tensor]) -> Tensor:
    return instantiate(cfg.solver)(Problem.of(grams, setup.terms, setup.generator, setup.space)).directions


def measure(overrides: list[str]) -> dict[str, Any]:
    """Every number of the module docstring for the run those overrides describe."""
    builds = {glue: build(overrides, glue) for glue in GLUES}
    (_, ours, grams), frame = builds["ours"], frames(builds["ours"][1])
    directions = {glue: subspace(*b) for glue, b in builds.items()}
    return {
        "heatmaps": heatmap_background(ours.analyzers.landmarker, frame),
        "terms": term_changes(ours, grams, builds["fan_seed"][2]),
        "masks": mask_changes(ours, builds["seed"][1], frame),
        "subspace_angle_deg": {glue: float(principal_angles(directions["ours"], directions[glue]).max())
                               for glue in ("fan_seed", "seed")},
        "directions": {glue: d.shape[1] for glue, d in directions.items()},
    }


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown, one line per task, median [worst] over the worlds: per landmark term, FAN decoded as the seed vs
    ours (λ_max ratio, worst = farthest from 1; top-vector angle; angle between the suppressed eigenspaces); per
    parser mask, seed vs image masks (area change, IoU); the subspace angles to ours."""
    lines = ["| task | FAN negative pixels | landmark terms: λ_max seed/ours · top vector ° · suppressed space ° "
             "| masks: area image/seed − 1 · IoU | subspace vs ours: FAN as seed ° · whole seed glue ° | directions ours / seed |",
             "|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        terms = []
        for name in mine[0]["terms"]:
            t = [r["terms"][name] for r in mine]
            cell = (f"{name}: {median_worst([x['lambda_max_ratio'] for x in t], lambda v: max(v, key=lambda y: abs(y - 1)))}"
                    f" · {median_worst([x['top_vector_angle_deg'] for x in t])}")
            if "significant_angle_deg" in t[0]:
                cell += f" · {median_worst([x['significant_angle_deg'] for x in t])}"
            terms.append(cell)
        masks = [f"{name}: {median_worst([r['masks'][name]['image_over_seed_area'] for r in mine], lambda v: max(v, key=abs))}"
                 f" · {median_worst([r['masks'][name]['iou'] for r in mine], min)}" for name in mine[0]["masks"]]
        angles = " · ".join(median_worst([r["subspace_angle_deg"][g] for r in mine]) for g in ("fan_seed", "seed"))
        dims = "/".join(sorted({f"{r['directions']['ours']}→{r['directions']['seed']}" for r in mine}))
        lines.append(f"| {task} | {median_worst([r['heatmaps'].get('negative_pixels', float('nan')) for r in mine])} | "
                     f"{'<br>'.join(terms) or '–'} | {'<br>'.join(masks) or '–'} | {angles} | {dims} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[Row]:
    args = resumable.parser(__doc__.split("\n")[0]).parse_args(argv)
    return resumable.run_rows(args, lambda task, world, analyzers, overrides: measure(
        [f"experiment=toyface/seed/{task}", f"generator.seed={world}", *analyzers, *overrides]), table)


if __name__ == "__main__":
    main()

"""Analyzers scored against the toyface oracles on worlds and faces they were not trained on.

For every scored world (``ScoreFaces``: the protocol's worlds 10-29 and its latent pools, samples.seed 8 and
9), over its faces:
- parser: IoU of every class the renderer draws and their mean (mIoU), predicted argmax labels against the
  oracle's (torchmetrics ``MulticlassJaccardIndex``). Classes toyface never draws (eye_g, ear_r, neck_l,
  hat) have no IoU and are left out of the mean; a pixel predicted as one of them counts against its
  true class. Also the IoU of the union masks the seven tasks' criteria read (conf/task: skin+neck,
  eyes, hair, lips, face_skin, mouth_all).
- landmarks: NME, the point error over the oracle's inter-ocular distance (outer eye corners 36 and 45),
  per landmark group (face_parts.LANDMARK_GROUPS) of the landmarker as configured.
- for a FAN, its last stack's heatmaps decoded four ways, each error against the oracle in image px:
  ``soft_relu`` (the project's FANLandmarker: ReLU, normalise by the sum, expectation), ``soft_sum`` (the
  seed's: normalise by the sum without ReLU), ``soft_local`` (ReLU near the peak only, ``heatmap_mode=local``)
  and ``hard`` (face-alignment's argmax with its quarter-pixel step), as mean and median px and as NME per
  group; the offset soft_relu - hard (all points, systematic per landmark, and its component towards the image
  centre, where a positive background pulls an expectation); and the heatmap background (pixels farther than
  BACKGROUND_PX from the peak): share of negative pixels, negative over positive mass, mean background over
  the peak, and the share of the ReLU'd mass that lies in the background.
Each world gives one number per metric; the summary is the median and the worst over worlds (IoU: the
lowest; everything else: the highest), as every toyface claim is reported.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import BinaryJaccardIndex, MulticlassJaccardIndex

from ice_exp.analyzers.base import Landmarker, Parser
from ice_exp.analyzers.fan import FANLandmarker, near_peak, soft_argmax
from ice_exp.analyzers.points import rescale_points
from ice_exp.common.face_parts import LANDMARK_GROUPS, REGIONS, expand_regions
from ice_exp.common.files import write_json
from ice_exp.common.images import resize
from ice_exp.config.task import load_task, task_names
from ice_exp.generators.base import Frame
from ice_exp.training.analyzers.data import oracle_targets, world_faces
from ice_exp.training.analyzers.heatmaps import hard_argmax

OUTER_EYE_CORNERS = (36, 45)  # iBUG points whose distance normalises the NME (inter-ocular)
BACKGROUND_PX = 4.0  # heatmap pixels farther than this from a map's argmax are its background (4 sigma of the targets)


@dataclass(frozen=True)
class ScoreFaces:
    """Faces z #0..faces-1 of each latent pool ``sample_seeds`` in each world first_world..last_world."""

    first_world: int = 10
    last_world: int = 29
    sample_seeds: tuple[int, ...] = (8, 9)
    faces: int = 16
    resolution: int = 128

    @property
    def worlds(self) -> range:
        return range(self.first_world, self.last_world + 1)


def task_regions() -> dict[str, tuple[str, ...]]:
    """{name: regions} of the masks the toyface tasks' criteria read (conf/task), e.g. ``skin+neck``."""
    regions = [tuple(load_task(name).region) for name in task_names()]
    return {"+".join(region): region for region in regions}


def parser_scores(parser: Parser, frames: list[Frame]) -> dict[str, float]:
    """IoU per drawn class (``iou/<class>``), their mean (``miou``) and the IoU of every task's region mask
    (``iou_region/<regions>``, the union of its classes) over the frames of one world."""
    to_regions = torch.tensor([REGIONS.index(name) for name in parser.class_names])  # the parser's labels -> REGIONS
    metric = MulticlassJaccardIndex(num_classes=len(REGIONS), average="none", zero_division=float("nan"))
    members = {name: torch.tensor([REGIONS.index(r) for r in expand_regions(regions)])
               for name, regions in task_regions().items()}  # the task files are read once per world
    unions = {name: BinaryJaccardIndex() for name in members}
    drawn = {0}  # the background is always there
    for frame in frames:
        labels, _ = oracle_targets(frame)
        predicted = to_regions[parser(frame).argmax(1)]
        metric.update(predicted, labels.long())
        for name, classes in members.items():
            unions[name].update(torch.isin(predicted, classes).long(), torch.isin(labels.long(), classes).long())
        drawn |= {cls for cls, _ in frame.scene.layers}
    iou = metric.compute()
    scores = {f"iou/{REGIONS[c]}": float(iou[c]) for c in sorted(drawn)}
    scores["miou"] = float(iou[sorted(drawn)].nanmean())
    scores.update({f"iou_region/{name}": float(union.compute()) for name, union in unions.items()})
    return scores


def decoded_points(landmarker: FANLandmarker, frame: Frame) -> tuple[dict[str, Tensor], Tensor]:
    """{decoding: points [N, 68, 2] in image px} of the last stack's heatmaps, and the heatmaps."""
    heatmaps = landmarker.net(resize(frame.image, landmarker.size))[-1]
    side, resolution = heatmaps.shape[-1], frame.image.shape[-1]
    decoded = {"soft_relu": soft_argmax(heatmaps.relu()), "soft_sum": soft_argmax(heatmaps),
               "soft_local": soft_argmax(near_peak(heatmaps, landmarker.local_radius)), "hard": hard_argmax(heatmaps)}
    return {name: rescale_points(p, side, resolution) for name, p in decoded.items()}, heatmaps


def background(heatmaps: Tensor) -> dict[str, Tensor]:
    """Per map [N, 68]: share of negative pixels, negative over positive mass, mean background over the peak,
    and the share of the ReLU'd map's mass in the background (the weight that pulls a soft-argmax off the peak)."""
    flat = heatmaps.flatten(2)
    side = heatmaps.shape[-1]
    peak = hard_argmax(heatmaps).round()
    grid = torch.arange(side, dtype=heatmaps.dtype)
    far = ((grid[None, None, None, :] - peak[..., 0, None, None]).square()
           + (grid[None, None, :, None] - peak[..., 1, None, None]).square()).flatten(2) > BACKGROUND_PX**2
    return {"negative_share": (flat < 0).float().mean(-1),
            "negative_mass_ratio": flat.clamp(max=0).sum(-1).abs() / flat.clamp(min=0).sum(-1),
            "background_over_peak": (flat * far).sum(-1) / far.sum(-1) / flat.amax(-1),
            "positive_background_share": (flat.relu() * far).sum(-1) / flat.relu().sum(-1)}


def group_nme(nme: Tensor, prefix: str) -> dict[str, float]:
    """{<prefix>/<group>: mean NME of the group's points} of per-point NMEs [N, 68]."""
    return {f"{prefix}/{group}": float(nme[:, list(idx)].mean()) for group, idx in LANDMARK_GROUPS.items()}


def landmark_scores(landmarker: Landmarker, frames: list[Frame]) -> dict[str, float]:
    """NME per landmark group (``nme/<group>``) and, for a FAN, each decoding's errors (``px/<decoding>/mean``,
    ``/median``, ``nme_<decoding>/<group>``), the offsets and the background."""
    nme, interoculars, errors, offsets, towards_centre, maps = [], [], {}, [], [], {}
    for frame in frames:
        _, truth = oracle_targets(frame)
        interocular = (truth[:, OUTER_EYE_CORNERS[0]] - truth[:, OUTER_EYE_CORNERS[1]]).norm(dim=-1)
        nme.append((landmarker(frame) - truth).norm(dim=-1) / interocular[:, None])
        interoculars.append(interocular)
        if isinstance(landmarker, FANLandmarker):
            decoded, heatmaps = decoded_points(landmarker, frame)
            for name, points in decoded.items():
                errors.setdefault(name, []).append((points - truth).norm(dim=-1))
            offset = decoded["soft_relu"] - decoded["hard"]
            to_centre = (frame.image.shape[-1] - 1) / 2 - decoded["hard"]
            offsets.append(offset)
            towards_centre.append((offset * to_centre).sum(-1) / to_centre.norm(dim=-1).clamp_min(1e-6))
            for name, value in background(heatmaps).items():
                maps.setdefault(name, []).append(value)
    scores = group_nme(torch.cat(nme), "nme")
    if errors:
        for name, values in errors.items():
            px = torch.cat(values)
            scores[f"px/{name}/mean"], scores[f"px/{name}/median"] = float(px.mean()), float(px.median())
            scores.update(group_nme(px / torch.cat(interoculars)[:, None], f"nme_{name}"))
        offset = torch.cat(offsets)
        scores["bias/soft_relu_minus_hard/mean_px"] = float(offset.norm(dim=-1).mean())
        scores["bias/soft_relu_minus_hard/systematic_px"] = float(offset.mean(0).norm(dim=-1).mean())
        scores["bias/soft_relu_minus_hard/towards_centre_px"] = float(torch.cat(towards_centre).mean())
        scores.update({f"heatmap/{name}": float(torch.cat(values).mean()) for name, values in maps.items()})
    return scores


@torch.no_grad()
def score(parser: Parser | None, landmarker: Landmarker | None, faces: ScoreFaces) -> dict:
    """{"per_world": {world: {metric: value}}, "summary": {metric: {"median", "worst"}}} of the given analyzers."""
    per_world = {}
    for world in faces.worlds:
        frames = [world_faces(world, seed, faces.faces, faces.resolution) for seed in faces.sample_seeds]
        per_world[world] = {**(parser_scores(parser, frames) if parser is not None else {}),
                            **(landmark_scores(landmarker, frames) if landmarker is not None else {})}
    return {"per_world": per_world, "summary": summarise(per_world)}


def summarise(per_world: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median and worst over worlds of every metric (IoU: the lowest is the worst; others: the highest)."""
    summary = {}
    for metric in next(iter(per_world.values())):
        values = torch.tensor([scores[metric] for scores in per_world.values()])
        worst = values.nan_to_num(float("inf")).amin() if "iou" in metric else values.nan_to_num(float("-inf")).amax()
        summary[metric] = {"median": float(values.nanmedian()), "worst": float(worst)}
    return summary


def markdown(summary: dict[str, dict[str, float]], worlds: int) -> str:
    """The summary as a markdown table (one row per metric)."""
    rows = [f"| metric | median over {worlds} worlds | worst |", "|---|---|---|"]
    rows += [f"| {metric} | {v['median']:.4g} | {v['worst']:.4g} |" for metric, v in summary.items()]
    return "\n".join(rows) + "\n"


SETBACK_WARNING = 1.5  # a stretch of training whose mean loss rose this many times above the lowest before it


def loss_setback(curve: list[float]) -> tuple[float, int]:
    """The largest ratio of a stretch's mean loss (record.json's ``loss_curve``) to the lowest mean before it,
    and that stretch: 1 for a loss that never rose. A BiSeNet whose loss rose 6.6x after the peak learning rate
    ended at mIoU 0.78 against 0.88 for draws that did not (experiments/results/trained_analyzers/RESULTS.md)."""
    ratios = [(curve[i] / min(curve[:i]), i) for i in range(1, len(curve))]
    return max([(1.0, 0), *ratios])


def setback_warning(record: dict[str, Any]) -> str | None:
    """A line that tells the reader the training diverged for a while, or None when it did not."""
    ratio, stretch = loss_setback(record["loss_curve"])
    if ratio < SETBACK_WARNING:
        return None
    return (f"warning: the training loss rose to {ratio:.1f}x its earlier lowest in stretch {stretch + 1} of "
            f"{len(record['loss_curve'])}: the network may be worse than another draw (train one with seed=1 and compare)")


def write_scores(results: dict, path: Path, faces: ScoreFaces, record: dict[str, Any] | None = None) -> None:
    """``results`` as JSON at ``path`` and as a markdown table beside it (``.md``), headed by the faces scored
    and, for a trained network, its training ``record`` (recipe.train: settings, times, loss curve)."""
    write_json(path, {"faces": asdict(faces), **results})
    lines = [f"# {path.stem}", "", f"- scored faces: {json.dumps(asdict(faces))}"]
    if record is not None:
        lines += [f"- network: {json.dumps(record['net'])}",
                  f"- training faces: {json.dumps(record['data'])}, seed {record['seed']}",
                  f"- time: {record['total_seconds']:.0f} s wall (rendering {record['render_seconds']:.0f} s), "
                  f"{record['cpu_seconds']:.0f} CPU-s on {record['threads']} threads ({record['accelerator']})",
                  f"- training loss: {record['loss_curve'][0]:.4g} -> {record['loss_curve'][-1]:.4g} (curve in record.json)"]
        if "clipped_steps" in record:  # records of the recipe before gradient clipping lack it
            lines.append(f"- gradient norm: {record['grad_norm_curve'][0]:.4g} -> {record['grad_norm_curve'][-1]:.4g}; "
                         f"{record['clipped_steps']} of {record['steps']} steps clipped (clip_factor "
                         f"{record['net'].get('clip_factor')})")
        if warning := setback_warning(record):
            lines.append(f"- **{warning}**")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n\n" + markdown(results["summary"], len(faces.worlds)))

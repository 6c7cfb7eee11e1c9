"""``trained_weights``: BiSeNet or FAN trained on toyface once, cached, in the published file layout.

The network is trained on the faces of ``ToyfaceData`` (many worlds, oracle labels) by the Lightning modules
of ice_exp.training.analyzers.modules. Its weights are written as the packages publish them, a plain state
dict with the packages' own key names (``parsing_bisenet.pth`` for facexlib's BiSeNet, ``fan.pth`` for
face-alignment's FAN), so the project's configs load them with nothing special-cased:
``analyzer/parser=bisenet analyzer.parser.path=<file> analyzer.parser.size=<size>`` and
``analyzer/landmarker=fan analyzer.landmarker.path=<file> analyzer.landmarker.size=<size>
analyzer.landmarker.num_modules=<k>``. ``record.json`` beside the file holds the settings, the training
time and the loss curve.

The cache lives under ``$ICE_EXP_CACHE/analyzers`` (default ``~/.cache/ice-exp``), one folder per network
keyed by a hash of the settings and of the code that makes the data and the network (``code_fingerprint``):
any change to either trains afresh.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import face_alignment.models.fan
import facexlib.parsing.bisenet
import facexlib.parsing.resnet
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from ice_exp.analyzers import points
from ice_exp.analyzers.base import Landmarker, Parser
from ice_exp.analyzers.fan import fan
from ice_exp.analyzers.parsers import bisenet
from ice_exp.common import images
from ice_exp.common.files import atomic_write, write_json
from ice_exp.common.progress import StepsBar
from ice_exp.generators.toyface import factors as toyface_factors
from ice_exp.generators.toyface import generator as toyface_generator
from ice_exp.generators.toyface import render as toyface_render
from ice_exp.training.analyzers import data as analyzer_data
from ice_exp.training.analyzers import heatmaps, modules
from ice_exp.training.analyzers.data import ToyfaceData, training_set
from ice_exp.training.analyzers.modules import AnalyzerModule, BiSeNetModule, FANModule
from ice_exp.training.cache import cache_key, cache_root
from ice_exp.training.cache import code_fingerprint as training_code
from ice_exp.world import oracles as toyface_oracles

log = logging.getLogger(__name__)
WEIGHT_FILES = {"bisenet": "parsing_bisenet.pth", "fan": "fan.pth"}  # bisenet: facexlib's published name
LOSS_CURVE_POINTS = 20  # the record keeps the mean loss and gradient norm of this many equal stretches of training


def build_module(net: dict[str, Any]) -> AnalyzerModule:
    """The Lightning module of ``net`` (an ``analyzer_net`` config: name, size, and the network's own keys)."""
    if net["name"] == "bisenet":
        return BiSeNetModule(net["size"], net["lr"], net["weight_decay"], net.get("clip_factor"))
    if net["name"] == "fan":
        return FANModule(net["size"], net["num_modules"], net["sigma"], net["lr"], net["weight_decay"], net.get("clip_factor"))
    raise ValueError(f"analyzer_net.name: unknown network {net['name']!r}; allowed values: {', '.join(WEIGHT_FILES)}")


def load_analyzer(net: dict[str, Any], path: str | Path) -> Parser | Landmarker:
    """The trained file behind the project's own builders (``analyzer/parser=bisenet``, ``landmarker=fan``)."""
    if net["name"] == "bisenet":
        return bisenet(path, net["size"])
    return fan(path, net["size"], net["num_modules"])


def stretch_means(values: torch.Tensor, points: int = LOSS_CURVE_POINTS) -> list[float]:
    """Mean of a per-step series (loss, gradient norm) over ``points`` equal stretches of the steps (fewer when
    there are fewer steps)."""
    return [float(chunk.mean()) for chunk in values.chunk(min(points, len(values)))]


def train(net: dict[str, Any], data: ToyfaceData, seed: int = 0, accelerator: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Render the training faces and train ``net`` for its steps; returns the network (CPU, eval mode) and
    its record (wall times, and the CPU time of all threads, which a machine shared with other jobs does not
    inflate). Initial weights and batch order come from ``seed`` only; the caller's random state is kept."""
    started, cpu_started = time.perf_counter(), time.process_time()
    dataset = training_set(data)
    rendered = time.perf_counter()
    trainer = pl.Trainer(max_steps=net["steps"], max_epochs=-1, accelerator=accelerator, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[StepsBar(f"training {net['name']}")])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_module(net)
        trainer.fit(module, DataLoader(dataset, batch_size=net["batch_size"], shuffle=True, drop_last=True))
    finished, cpu_seconds = time.perf_counter(), time.process_time() - cpu_started
    losses = torch.stack(module.losses).float().cpu()
    record = {"render_seconds": rendered - started, "train_seconds": finished - rendered,
              "total_seconds": finished - started, "cpu_seconds": cpu_seconds, "faces": len(dataset), "steps": len(losses),
              "loss_curve": stretch_means(losses), "grad_norm_curve": stretch_means(torch.tensor(module.grad_norms)),
              "clipped_steps": module.clipped_steps, "accelerator": accelerator, "threads": torch.get_num_threads(),
              "torch": torch.__version__}
    return module.net.cpu().eval(), record


# The code that makes the training data and the network: the toyface world, this package's data, heatmaps
# and modules, ``train``, the packages' network classes.
TRAINING_CODE = (toyface_render, toyface_factors, toyface_generator, toyface_oracles, analyzer_data, heatmaps, modules,
                 images, points, facexlib.parsing.bisenet, facexlib.parsing.resnet, face_alignment.models.fan, train)


def code_fingerprint() -> str:
    """sha256 of TRAINING_CODE: a change to any of it trains afresh."""
    return training_code(TRAINING_CODE)


def trained_weights(net: dict[str, Any], data: ToyfaceData, seed: int = 0, accelerator: str = "cpu",
                    cache_dir: str | Path | None = None) -> Path:
    """The weight file of ``net`` trained on ``data`` (trained on first use, then read from the cache).
    ``cache_dir`` None: ``$ICE_EXP_CACHE/analyzers``. The file is written last and atomically: a folder
    without it (a killed run) trains again, and a concurrent reader never sees half a file."""
    net = {str(k): v for k, v in net.items()}
    build_module(net)  # an unknown network name fails here, before any rendering
    spec = {"net": net, "data": asdict(data), "seed": seed, "code": code_fingerprint()}
    root = Path(cache_dir).expanduser() if cache_dir else cache_root() / "analyzers"
    path = root / f"{net['name']}-{cache_key(spec)}" / WEIGHT_FILES[net["name"]]
    if path.is_file():
        log.info("%s: cached at %s", net["name"], path)
        return path
    log.info("training %s on %d toyface worlds -> %s", net["name"], data.worlds, path)
    trained, record = train(net, data, seed, accelerator)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path.parent / "record.json", {**record, **spec, "file": path.name})
    atomic_write(path, lambda tmp: torch.save(trained.state_dict(), tmp))
    log.info("%s: trained in %.0f s (rendering %.0f s), loss %.4g -> %.4g; %s", net["name"], record["total_seconds"],
             record["render_seconds"], record["loss_curve"][0], record["loss_curve"][-1], path)
    return path

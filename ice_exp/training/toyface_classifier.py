"""``toyface_attr``: a small CNN that predicts a toyface "attribute" defined by a known rule over factors.

The rule (class 1 ⇔ Σ weight_f · factor_f > threshold) is the ground truth of the explanation: only the
subspaces whose true factor groups hold the rule's factors should be able to flip the classifier. For the
network to depend on the rule's factors *only*, it is trained on an interventional data set: every factor
drawn independently and uniformly over (-1, 1), rendered by the toyface renderer. Toyface's sampled
factors are correlated (through the shared read-out), which a network trained on plain samples would use
as a shortcut; uniform factors also cover the extremes that a counterfactual search drives factors to.

Training (Lightning, CPU, about a minute at 64 px) runs once; the weights are cached under
``$ICE_EXP_CACHE`` (default ``~/.cache/ice-exp``) keyed by a hash of the rule, the toyface seed, the
resolution, the training settings and the code (toyface's and this module's), stored with the accuracies
and the training time.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAccuracy

from ice_exp.common.files import atomic_write
from ice_exp.common.progress import StepsBar
from ice_exp.counterfactual.classifiers import Classifier, ImageTransform
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.generators.toyface import factors as toyface_factors
from ice_exp.generators.toyface import generator as toyface_generator
from ice_exp.generators.toyface import render as toyface_render
from ice_exp.generators.toyface.factors import FACTORS, factor_index
from ice_exp.training.cache import cache_key, cache_root
from ice_exp.training.cache import code_fingerprint as training_code
from ice_exp.world import attribute
from ice_exp.world.attribute import AttrRule

log = logging.getLogger(__name__)
RENDER_CHUNK = 256


@dataclass(frozen=True)
class TrainSettings:
    samples: int = 4096  # training images
    held_out: int = 1024  # held-out images (accuracy)
    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0


def interventional_factors(count: int, seed: int) -> Tensor:
    """Factors [count, 20], each drawn independently and uniformly over its whole range (-1, 1)."""
    return torch.rand(count, len(FACTORS), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def render_factors(generator: ToyFaceGenerator, factors: Tensor) -> Tensor:
    """Images [B, 3, R, R] in ~[0, 1] of given factors, as the generator draws them (in chunks)."""
    with torch.no_grad():
        return torch.cat([toyface_render.render(f, generator.resolution, generator.noise)[0] * 0.5 + 0.5
                          for f in factors.split(RENDER_CHUNK)])


class ToyFaceAttrNet(nn.Module):
    """Four stride-2 conv blocks (16-32-64-64 channels), global average pooling, a linear layer: 2 logits."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        chans = (3, width, 2 * width, 4 * width, 4 * width)
        self.features = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(i, o, 5 if k == 0 else 3, 2, 2 if k == 0 else 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())
            for k, (i, o) in enumerate(zip(chans[:-1], chans[1:]))])
        self.head = nn.Linear(chans[-1], 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean((2, 3)))


class ToyFaceAttrModule(pl.LightningModule):
    """Cross-entropy training with AdamW and a one-cycle schedule; held-out accuracy as a torchmetric."""

    def __init__(self, net: ToyFaceAttrNet, settings: TrainSettings) -> None:
        super().__init__()
        self.net, self.settings = net, settings
        self.accuracy = BinaryAccuracy()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.accuracy.update(self.net(x).argmax(1), y)

    def on_validation_epoch_end(self) -> None:
        self.log("accuracy", self.accuracy.compute())
        self.accuracy.reset()

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.settings.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, self.settings.lr, total_steps=self.trainer.estimated_stepping_batches)
        return [opt], [{"scheduler": sched, "interval": "step"}]


def natural_factors(generator: ToyFaceGenerator, count: int, seed: int) -> Tensor:
    """Factors [count, 20] of sampled faces (the faces an explanation runs on, with their correlations)."""
    z = torch.randn(count, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.factors(generator.encode(z, "s"))


def _loader(images: Tensor, labels: Tensor, batch_size: int = 256, shuffle: bool = False) -> DataLoader:
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=shuffle, drop_last=shuffle)


def train_toyface_attr(rule: dict[str, float], generator_seed: int, resolution: int, settings: TrainSettings,
                       threshold: float | None = None) -> tuple[ToyFaceAttrNet, dict[str, Any]]:
    """Render the interventional data set, label it by the rule (threshold None = the median score, i.e.
    balanced classes), train; returns the network and its record: the threshold, the accuracy on held-out
    interventional images and on sampled faces ("natural"), the training time. The caller's random state
    is left as it was."""
    started = time.perf_counter()
    generator = ToyFaceGenerator(resolution=resolution, seed=generator_seed)
    factors = interventional_factors(settings.samples + settings.held_out, settings.seed)
    scores = AttrRule(rule).score(factors)
    threshold = float(scores[: settings.samples].median()) if threshold is None else float(threshold)
    truth = AttrRule(rule, threshold)
    labels = truth.label(factors)
    images = render_factors(generator, factors)
    natural = natural_factors(generator, settings.held_out, settings.seed + 1)
    n = settings.samples
    trainer = pl.Trainer(max_epochs=settings.epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=settings.epochs,
                         num_sanity_val_steps=0, callbacks=[StepsBar("training the toyface classifier")])
    with torch.random.fork_rng():  # initial weights and batch order from settings.seed only
        torch.manual_seed(settings.seed)
        module = ToyFaceAttrModule(ToyFaceAttrNet(), settings)
        trainer.fit(module, _loader(images[:n], labels[:n], settings.batch_size, shuffle=True), _loader(images[n:], labels[n:]))
    accuracy = float(trainer.callback_metrics["accuracy"])
    natural_accuracy = trainer.validate(module, _loader(render_factors(generator, natural), truth.label(natural)),
                                        verbose=False)[0]["accuracy"]
    record = {"rule": rule, "threshold": threshold, "held_out_accuracy": accuracy, "natural_accuracy": natural_accuracy,
              "positive_share": float(labels.float().mean()), "train_seconds": time.perf_counter() - started,
              "generator_seed": generator_seed, "resolution": resolution, "train": asdict(settings)}
    return module.net.eval(), record


def code_fingerprint() -> str:
    """The code that makes the data and the network: the toyface world, the rule and this recipe."""
    return training_code((toyface_render, toyface_factors, toyface_generator, attribute, sys.modules[__name__]))


def toyface_attr(rule: dict[str, float], generator_seed: int = 0, resolution: int = 64, threshold: float | None = None,
                 train: dict[str, Any] | None = None, cache_dir: str | None = None, min_accuracy: float = 0.9,
                 name: str = "attractive") -> Classifier:
    """The cached toyface classifier of ``rule`` (trained on first use), as a one-head :class:`Classifier`
    named ``name``. Its input transform resizes any frame to ``resolution``; ``info`` holds the rule, the
    threshold and the held-out accuracy (a warning is logged when it is below ``min_accuracy``)."""
    rule = {str(k): float(v) for k, v in rule.items()}
    factor_index(list(rule), key="classifier.rule")
    settings = TrainSettings(**(train or {}))
    spec = {"rule": rule, "threshold": threshold, "generator_seed": generator_seed, "resolution": resolution,
            "train": asdict(settings), "code": code_fingerprint()}
    path = Path(cache_dir).expanduser() if cache_dir else cache_root() / "toyface_attr"
    path = path / f"{cache_key(spec)}.safetensors"
    net = ToyFaceAttrNet()
    cached = path.is_file()
    if cached:
        net.load_state_dict(load_file(str(path)))
        with safe_open(str(path), "pt") as f:
            record = json.loads(f.metadata()["record"])
    else:
        log.info("training toyface_attr (%s) -> %s", rule, path)
        net, record = train_toyface_attr(rule, generator_seed, resolution, settings, threshold)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"record": json.dumps(record)}))
    if record["held_out_accuracy"] < min_accuracy:
        log.warning("toyface_attr: held-out accuracy %.3f is below %.2f", record["held_out_accuracy"], min_accuracy)
    log.info("toyface_attr: accuracy %.3f held out, %.3f on sampled faces (%s %s)", record["held_out_accuracy"],
             record["natural_accuracy"], "read from" if cached else f"trained in {record['train_seconds']:.0f} s, saved to", path)
    clf = Classifier(net, ImageTransform(size=resolution), heads=(name,), target=name, info={**record, "cache": str(path)})
    clf.weight_path = path
    return clf

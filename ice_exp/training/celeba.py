"""Training recipe for :class:`CelebAAttrResNet50` (the seed's weights were never published).

Follows d-li14/face-attribute-prediction: ImageNet-initialised ResNet-50, aligned 218 x 178 CelebA images
with a random horizontal flip and ImageNet normalisation, the sum over the 40 heads of the cross-entropy,
SGD (lr 0.1, momentum 0.9, weight decay 1e-4, batch 256), 10 epochs with cosine decay (the recipe's
"5-10 epochs when fine-tuning"). Validation reports the accuracy of every attribute (torchmetrics
``MultilabelAccuracy``); the best epoch by mean validation accuracy is written as ``model_best.pth.tar``
in the published layout (``{'state_dict': {'module.' + key: tensor}, 'epoch', 'arch', 'best_prec1'}``), so
``classifier=celeba_attr_resnet50 classifier.path=<out_dir>`` loads it. The test split's accuracies of the
best weights go to ``test_accuracy.json``.

Data: torchvision's ``CelebA`` (nothing downloaded) reads ``<data_dir>/celeba/``: ``img_align_celeba/`` and
CelebA's five list files as published (torchvision checks their MD5s and reads them all, whichever target).
The best epoch is kept by Lightning's ``ModelCheckpoint`` (``best.ckpt``) and exported to ``model_best.pth.tar``.
``ice-train-celeba data_dir=/data out_dir=outputs/celeba_attr`` (ice_exp/apps/train_celeba.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor
from torch.utils.data import DataLoader
from torchmetrics.classification import MultilabelAccuracy
from torchvision import transforms
from torchvision.datasets import CelebA
from torchvision.datasets.utils import check_integrity

from ice_exp.common.celeba_attributes import CELEBA_ATTRIBUTES
from ice_exp.common.files import write_json
from ice_exp.counterfactual.classifiers import IMAGENET_MEAN, IMAGENET_STD, CelebAAttrResNet50

log = logging.getLogger(__name__)
SPLITS = {"train": "train", "val": "valid", "test": "test"}  # our stage names -> torchvision's split names
LISTS = [name for _, _, name in CelebA.file_list if name.endswith(".txt")]  # the list files torchvision reads
MONITOR = "val/accuracy_mean"  # what ModelCheckpoint keeps the best epoch by


def celeba(data_dir: str | Path, split: str, transform: Any) -> CelebA:
    """One split of torchvision's CelebA, targets the 40 attributes as {0, 1}. A missing or altered file is
    named together with the expected layout (torchvision only says "Dataset not found or corrupted")."""
    folder = Path(data_dir) / CelebA.base_folder
    layout = f"torchvision's CelebA layout: {folder}/ holding img_align_celeba/ and {', '.join(LISTS)}"
    missing = [name for name in ("img_align_celeba", *LISTS) if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"data_dir: no {', '.join(missing)} in {folder} ({layout})")
    try:
        data = CelebA(str(data_dir), split=SPLITS[split], target_type="attr", transform=transform, download=False)
    except RuntimeError:
        altered = [name for _, md5, name in CelebA.file_list if name in LISTS and not check_integrity(str(folder / name), md5)]
        if not altered:
            raise
        raise ValueError(f"data_dir: {', '.join(altered)} in {folder} differ from CelebA's published files "
                         f"(MD5 checked by torchvision); {layout}") from None
    if [name for name in data.attr_names if name] != list(CELEBA_ATTRIBUTES):  # the header line may end with a space
        raise ValueError(f"{folder / 'list_attr_celeba.txt'}: line 2 must name CelebA's 40 attributes in the standard order")
    return data


class CelebAAttrModule(pl.LightningModule):
    def __init__(self, pretrained: bool, lr: float, momentum: float, weight_decay: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = CelebAAttrResNet50(pretrained=pretrained)
        self.accuracy = MultilabelAccuracy(num_labels=len(CELEBA_ATTRIBUTES), average="none")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self.model(x)  # [B, 40, 2]
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / len(x)  # Σ over heads
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.accuracy.update(self.model(x).softmax(-1)[..., 1], y)

    test_step = validation_step

    def _log_accuracy(self, stage: str) -> None:
        per_attribute = self.accuracy.compute()
        self.accuracy.reset()
        self.log(f"{stage}/accuracy_mean", per_attribute.mean())
        self.log_dict({f"{stage}/accuracy/{n}": a for n, a in zip(CELEBA_ATTRIBUTES, per_attribute)})

    def on_validation_epoch_end(self) -> None:
        self._log_accuracy("val")

    def on_test_epoch_end(self) -> None:
        self._log_accuracy("test")

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                              weight_decay=self.hparams.weight_decay)
        return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.trainer.max_epochs))]


def export_published(checkpoint: Path, path: Path, accuracy: float) -> None:
    """The classifier of a Lightning checkpoint in d-li14's layout (``{'state_dict': {'module.' + key: tensor},
    'epoch', 'arch', 'best_prec1'}``), which ``classifier=celeba_attr_resnet50 classifier.path=<out_dir>`` loads."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {f"module.{k.removeprefix('model.')}": v for k, v in saved["state_dict"].items() if k.startswith("model.")}
    torch.save({"epoch": saved["epoch"] + 1, "arch": "resnet50", "state_dict": state, "best_prec1": 100 * accuracy}, path)


def loaders(cfg: DictConfig) -> dict[str, DataLoader]:
    normalise = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_tf, eval_tf = transforms.Compose([transforms.RandomHorizontalFlip(), *normalise]), transforms.Compose(normalise)

    def make(split: str, transform: Any, shuffle: bool) -> DataLoader:
        return DataLoader(celeba(cfg.data_dir, split, transform), batch_size=cfg.batch_size, shuffle=shuffle,
                          drop_last=shuffle, num_workers=cfg.num_workers)

    return {"train": make("train", train_tf, True), "val": make("val", eval_tf, False), "test": make("test", eval_tf, False)}


def train(cfg: DictConfig) -> Path:
    """Train, keep the best epoch (``best.ckpt``), evaluate it on the test split and export it in the published
    layout; returns ``model_best.pth.tar``."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = loaders(cfg)
    module = CelebAAttrModule(cfg.pretrained, cfg.lr, cfg.momentum, cfg.weight_decay)
    best = ModelCheckpoint(dirpath=out_dir, filename="best", monitor=MONITOR, mode="max", save_weights_only=True)
    trainer = pl.Trainer(max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, logger=False,
                         callbacks=[best], enable_model_summary=False, limit_train_batches=cfg.limit_train_batches,
                         limit_val_batches=cfg.limit_val_batches, num_sanity_val_steps=0,
                         enable_progress_bar=cfg.progress_bar)
    trainer.fit(module, data["train"], data["val"])
    results = trainer.test(module, data["test"], ckpt_path="best", verbose=False)[0]
    path = out_dir / CelebAAttrResNet50.checkpoint_name
    if trainer.is_global_zero:
        export_published(Path(best.best_model_path), path, float(best.best_model_score))
        write_json(out_dir / "test_accuracy.json", results)
        log.info("best epoch: mean val accuracy %.4f, test %.4f; checkpoint %s", best.best_model_score,
                 results["test/accuracy_mean"], path)
    return path

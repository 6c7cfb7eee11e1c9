"""Training recipe for :class:`CelebAAttrResNet50` (the seed's weights were never published).

Follows d-li14/face-attribute-prediction: ImageNet-initialised ResNet-50, aligned 218 x 178 CelebA images
with a random horizontal flip and ImageNet normalisation, the sum over the 40 heads of the cross-entropy,
SGD (lr 0.1, momentum 0.9, weight decay 1e-4, batch 256), 10 epochs with cosine decay (the recipe's
"5-10 epochs when fine-tuning"). Validation reports the accuracy of every attribute (torchmetrics
``MultilabelAccuracy``); the best epoch by mean validation accuracy is written as ``model_best.pth.tar``
in the published layout (``{'state_dict': {'module.' + key: tensor}, 'epoch', 'arch', 'best_prec1'}``), so
``classifier=celeba_attr_resnet50 classifier.path=<out_dir>`` loads it. The test split's accuracies of the
best weights go to ``test_accuracy.json``.

Data: a CelebA folder with ``img_align_celeba/``, ``list_attr_celeba.txt`` and ``list_eval_partition.txt``.
``ice-train-celeba data_dir=/data/celeba out_dir=outputs/celeba_attr`` (ice_exp/apps/train_celeba.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MultilabelAccuracy
from torchvision import transforms

from ice_exp.celeba_attributes import CELEBA_ATTRIBUTES
from ice_exp.counterfactual.classifiers import IMAGENET_MEAN, IMAGENET_STD, CelebAAttrResNet50
from ice_exp.records import write_json

log = logging.getLogger(__name__)
SPLITS = {"train": 0, "val": 1, "test": 2}  # list_eval_partition.txt codes


class CelebAAttributes(Dataset):
    """Images of one split of a CelebA folder with their 40 attributes as {0, 1} (file: -1 / 1)."""

    def __init__(self, root: str | Path, split: str, transform: Any) -> None:
        root = Path(root)
        for name in ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"):
            if not (root / name).exists():
                raise FileNotFoundError(f"data_dir: {root} has no {name} (a CelebA folder holds img_align_celeba/, "
                                        f"list_attr_celeba.txt and list_eval_partition.txt)")
        lines = (root / "list_attr_celeba.txt").read_text().split("\n")
        names = tuple(lines[1].split())
        if names != CELEBA_ATTRIBUTES:
            raise ValueError(f"{root / 'list_attr_celeba.txt'}: line 2 must name CelebA's 40 attributes in the standard order")
        partition = dict(line.split() for line in (root / "list_eval_partition.txt").read_text().splitlines() if line.strip())
        rows = [line.split() for line in lines[2:] if line.strip()]
        keep = [r for r in rows if int(partition[r[0]]) == SPLITS[split]]
        self.files = [root / "img_align_celeba" / r[0] for r in keep]
        self.targets = torch.tensor([[int(v) > 0 for v in r[1:]] for r in keep], dtype=torch.long).view(-1, len(names))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        with Image.open(self.files[i]) as image:
            return self.transform(image.convert("RGB")), self.targets[i]


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


class PublishedCheckpoint(pl.Callback):
    """Writes ``model_best.pth.tar`` in d-li14's layout whenever the mean validation accuracy improves."""

    def __init__(self, out_dir: Path) -> None:
        self.path, self.best = out_dir / CelebAAttrResNet50.checkpoint_name, -1.0

    def on_validation_end(self, trainer: pl.Trainer, module: CelebAAttrModule) -> None:
        accuracy = float(trainer.callback_metrics["val/accuracy_mean"])
        if trainer.sanity_checking or accuracy <= self.best or not trainer.is_global_zero:
            return
        self.best = accuracy
        state = {f"module.{k}": v.detach().cpu() for k, v in module.model.state_dict().items()}
        torch.save({"epoch": trainer.current_epoch + 1, "arch": "resnet50", "state_dict": state,
                    "best_prec1": 100 * accuracy}, self.path)
        log.info("epoch %d: mean val accuracy %.4f -> %s", trainer.current_epoch + 1, accuracy, self.path)


def loaders(cfg: DictConfig) -> dict[str, DataLoader]:
    normalise = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_tf, eval_tf = transforms.Compose([transforms.RandomHorizontalFlip(), *normalise]), transforms.Compose(normalise)

    def make(split: str, transform: Any, shuffle: bool) -> DataLoader:
        return DataLoader(CelebAAttributes(cfg.data_dir, split, transform), batch_size=cfg.batch_size, shuffle=shuffle,
                          drop_last=shuffle, num_workers=cfg.num_workers)

    return {"train": make("train", train_tf, True), "val": make("val", eval_tf, False), "test": make("test", eval_tf, False)}


def train(cfg: DictConfig) -> Path:
    """Train, keep the best epoch in the published layout, evaluate it on the test split; returns the checkpoint."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = loaders(cfg)
    module = CelebAAttrModule(cfg.pretrained, cfg.lr, cfg.momentum, cfg.weight_decay)
    checkpoint = PublishedCheckpoint(out_dir)
    trainer = pl.Trainer(max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, logger=False,
                         callbacks=[checkpoint], enable_checkpointing=False, enable_model_summary=False,
                         limit_train_batches=cfg.limit_train_batches, limit_val_batches=cfg.limit_val_batches,
                         num_sanity_val_steps=0, enable_progress_bar=cfg.progress_bar)
    trainer.fit(module, data["train"], data["val"])
    best = torch.load(checkpoint.path, map_location="cpu", weights_only=True)["state_dict"]
    module.model.load_state_dict({k.removeprefix("module."): v for k, v in best.items()})
    results = trainer.test(module, data["test"], verbose=False)[0]
    write_json(out_dir / "test_accuracy.json", results)
    log.info("test mean accuracy %.4f; checkpoint %s", results["test/accuracy_mean"], checkpoint.path)
    return checkpoint.path

"""Progress bars named after what each stage does, off without a terminal (tqdm's ``disable=None``) and in
the jobs of a parallel sweep (:func:`bar_disable`).

Kept apart from the training code so that changing how progress is shown never changes a training
recipe's code fingerprint (and so never retrains a cached network)."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from tqdm.auto import tqdm


def bar_disable() -> bool | None:
    """tqdm's ``disable`` for the bars of this process: True in a job of a sweep whose launcher runs jobs side
    by side (joblib, submitit: their bars would overwrite each other on one terminal line, and no bar says
    which job it is), else None (shown only on a terminal)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return None if HydraConfig.get().launcher._target_.endswith(".BasicLauncher") else True


class StepsBar(pl.Callback):
    """One bar over all the optimizer steps of ``Trainer.fit`` (Lightning's own bar restarts every epoch and
    is labelled "Epoch N"), with the loss of the latest step."""

    def __init__(self, name: str, disable: bool | None = None) -> None:
        self.name, self.disable = name, disable  # disable None: bar_disable()
        self.bar: tqdm | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bar = tqdm(total=trainer.estimated_stepping_batches, desc=self.name, unit="step", leave=False,
                        disable=bar_disable() if self.disable is None else self.disable)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.bar.update(1)
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bar.close()

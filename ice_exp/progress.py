"""Progress bars named after what each stage does, off without a terminal (tqdm's ``disable=None``).

Kept apart from the training code so that changing how progress is shown never changes a training
recipe's code fingerprint (and so never retrains a cached network)."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from tqdm.auto import tqdm


class StepsBar(pl.Callback):
    """One bar over all the optimizer steps of ``Trainer.fit`` (Lightning's own bar restarts every epoch and
    is labelled "Epoch N"), with the loss of the latest step."""

    def __init__(self, name: str, disable: bool | None = None) -> None:
        self.name, self.disable = name, disable  # disable None: shown only on a terminal
        self.bar: tqdm | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bar = tqdm(total=trainer.estimated_stepping_batches, desc=self.name, unit="step", disable=self.disable,
                        leave=False)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.bar.update(1)
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bar.close()

"""``ice-train-celeba data_dir=<folder holding celeba/> out_dir=<folder>``: train the seed's CelebA attribute classifier
(recipe and outputs: ice_exp.training.celeba; config: conf/train_celeba.yaml)."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ice_exp.config import CONF_DIR
from ice_exp.training.celeba import train


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train_celeba")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()

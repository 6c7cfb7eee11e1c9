"""``ice-compare`` (= ``python -m ice_exp.apps.compare [overrides]``): every solver on the same task, scored alike,
in one table (ice_exp.run.comparison; config: conf/compare.yaml), with the protocol every app shares
(ice_exp/run/protocol.py)."""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ice_exp.config import CONF_DIR
from ice_exp.run.protocol import run_job

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="compare")
def main(cfg: DictConfig) -> None:
    run_job(cfg, lambda out_dir: comparison(cfg, out_dir))


def comparison(cfg: DictConfig, out_dir: Path) -> None:
    from ice_exp.run.comparison import compare, headline  # torch and Lightning: only after the config passed its checks

    rows = compare(cfg, out_dir, list(HydraConfig.get().overrides.task))
    if rows:  # not on DDP ranks above 0
        log.info("compare of %s (every column: %s):\n%s", cfg.criteria.name, out_dir / "compare.md", headline(rows))


if __name__ == "__main__":
    main()

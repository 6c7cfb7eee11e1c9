"""``ice-explain run_dirs=[outputs/a/<time>,outputs/b/<time>]``: explain a classifier inside the subspaces of
finished discovery runs (ice_exp.run.explanation; config: conf/explain.yaml), with the protocol every app
shares (ice_exp/run/protocol.py)."""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ice_exp.config import CONF_DIR
from ice_exp.run.protocol import run_job


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="explain")
def main(cfg: DictConfig) -> None:
    run_job(cfg, lambda out_dir: explanation(cfg, out_dir))


def explanation(cfg: DictConfig, out_dir: Path) -> None:
    from ice_exp.run.explanation import explain_runs  # torch: only after the config passed its checks

    explain_runs(cfg, out_dir)
    print((out_dir / "table.md").read_text())


if __name__ == "__main__":
    main()

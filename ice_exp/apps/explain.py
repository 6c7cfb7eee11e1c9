"""``ice-explain run_dirs=[outputs/a/<time>,outputs/b/<time>]``: explain a classifier inside the subspaces of
finished discovery runs (ice_exp.explain_runs; config: conf/explain.yaml). The config is checked
before torch is imported."""
from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ice_exp.config import CONF_DIR, check_config
from ice_exp.console import quiet_library_warnings


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="explain")
def main(cfg: DictConfig) -> None:
    quiet_library_warnings()
    check_config(cfg)
    from ice_exp.explain_runs import explain_runs  # torch: only after the config passed its checks

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    explain_runs(cfg, out_dir)
    print((out_dir / "table.md").read_text())


if __name__ == "__main__":
    main()

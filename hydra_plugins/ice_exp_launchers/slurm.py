"""hydra-submitit-launcher's SLURM launcher with one SLURM job per sweep job, each named after what it is
(conf/hydra/launcher/slurm.yaml; docs/sweeps.md; in hydra_plugins because Hydra instantiates launchers only from there).

The plugin submits a sweep as one SLURM job array, and every task of an array carries the array's one job
name (a SLURM rule: ``--job-name`` belongs to the array), so ``squeue`` and ``sacct`` cannot tell its jobs
apart. This launcher submits each job on its own with the name ``<name>#<job number> <the job's values of
what the sweep varies>`` (``ice-exp#3 criteria=lip_color seed=1``: the job folder ``3_lip_color``); every
other setting is the plugin's. What it gives up is the array's cap on jobs at once (``array_parallelism``):
``hydra.sweeper.max_batch_size`` submits the sweep in batches instead, each after the last has ended.
``hydra/launcher=slurm_array`` is the plugin's own array, named after the sweep as a whole."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as ArraySlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def job_name(prefix: str, job_num: int, job_overrides: Sequence[str], sweep: Sequence[str]) -> str:
    """``<prefix>#<job number>`` and those of the job's overrides whose key the ``sweep`` varies
    (``ice_exp.run.tracking.sweep_overrides``: its command line's lists and ranges, then its config's
    ``hydra.sweeper.params``), as its W&B run name has them."""
    from ice_exp.run.tracking import varied  # not at import: Hydra imports every plugin module at each start

    return " ".join([f"{prefix}#{job_num}", *varied(list(job_overrides), list(sweep))])


class SlurmLauncher(ArraySlurmLauncher):
    def submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
        """Submit every job of ``job_overrides`` as its own SLURM job under its own name; returns submitit's
        jobs (the plugin's ``launch`` up to ``map_array``, which would make them one array)."""
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        init_keys = {"max_num_timeout", "submitit_folder"}
        init = {f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k == "max_num_timeout"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=self.params["submitit_folder"], **init)
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in generic else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        from ice_exp.run.tracking import sweep_overrides

        sweep = sweep_overrides(list(self.config.hydra.overrides.task), OmegaConf.select(self.config, "hydra.sweeper.params"))
        jobs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            name = job_name(self.params["name"], idx, overrides, sweep)
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            executor.update_parameters(name=name)
            jobs.append(executor.submit(self, list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                                        Singleton.get_state()))
        return jobs

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return [job.results()[0] for job in self.submit(job_overrides, initial_job_idx)]

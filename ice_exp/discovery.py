"""The discovery run as a LightningModule: each validation step accumulates one sample's JᵀJ per term;
the epoch end solves, evaluates on held-out samples, writes the outputs and logs them.

Lightning's validation loop is used because discovery optimises nothing: it runs every sample once, under
DDP without wrapping the module, and with ``inference_mode=False`` the steps may differentiate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ice_exp.engine.accumulator import GramAccumulator
from ice_exp.evaluation import evaluate, ground_truth
from ice_exp.generators.base import Generator
from ice_exp.grams import SampleGrams
from ice_exp.outputs import save_subspace, write_json
from ice_exp.solvers.base import Problem, Solution, Solver, SuppressTerm
from ice_exp.terms import Terms
from ice_exp.tracking import log_run
from ice_exp.viz import direction_grid, spectrum_plot


@dataclass
class RunSettings:
    space: str = "s"
    engine: dict[str, Any] = field(default_factory=dict)  # conf/config.yaml: engine (SampleGrams options)
    z_eval: Tensor | None = None  # held-out samples
    truth: list[str] | None = None  # ground-truth factor group (toyface)
    out_dir: Path | None = None  # where rank 0 writes; None writes nothing
    steps: list[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    magnitude: float = 3.0
    grid_directions: int = 5
    random_directions: int = 8
    meta: dict[str, Any] = field(default_factory=dict)


class DiscoveryModule(pl.LightningModule):
    def __init__(self, generator: Generator, terms: Terms, solver: Solver, settings: RunSettings) -> None:
        super().__init__()
        self.generator, self.terms, self.solver, self.settings = generator, terms, solver, settings
        self.criteria = nn.ModuleList(terms.criteria.values())  # registered so that .to(device) moves them
        dim = generator.space_dim(settings.space)
        self.accumulators = nn.ModuleDict({t.name: GramAccumulator(dim) for t in terms.terms})
        self.grams = SampleGrams(generator, terms, settings.space, **settings.engine)
        self.solution: Solution | None = None
        self.first_z: Tensor | None = None  # a training sample, for the direction grid without held-out samples
        self.metrics: dict[str, Any] = {}
        self._started = 0.0

    def on_validation_epoch_start(self) -> None:
        self._started = time.perf_counter()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        _, z = batch
        self.first_z = z[:1] if self.first_z is None else self.first_z
        u = self.generator.encode(z, self.settings.space)[0].detach()
        for name, g in self.grams(z[0], u).items():
            self.accumulators[name].update(g)

    def problem(self) -> Problem:
        grams = {name: acc.compute() for name, acc in self.accumulators.items()}  # summed over processes
        return Problem(activate=grams[self.terms.activate.name],
                       suppress=[SuppressTerm(t.name, grams[t.name], t.ratio) for t in self.terms.suppress],
                       generator=self.generator, space=self.settings.space)

    def on_validation_epoch_end(self) -> None:
        problem = self.problem()
        self.solution = self.solver(problem)
        self.metrics = {"time/discovery_s": time.perf_counter() - self._started,  # accumulate + solve
                        **self.grams.precision_check}  # tf32 / bf16: the eigenspace error they caused
        if self.trainer.is_global_zero:
            with torch.enable_grad():
                self.metrics.update(self._evaluate(problem))
            self._write(problem)

    def _evaluate(self, problem: Problem) -> dict[str, Any]:
        s, sol = self.settings, self.solution
        out: dict[str, Any] = {"solver/num_directions": sol.directions.shape[1],
                               "solver/sigma": sol.sigma.tolist()}
        if s.z_eval is not None and len(s.z_eval):
            out.update(evaluate(self.generator, self.terms, s.space, sol, s.z_eval, s.random_directions))
            if s.truth:
                out.update(ground_truth(self.generator, s.space, s.truth, sol, problem, s.z_eval))
        return out

    def _write(self, problem: Problem) -> None:
        s = self.settings
        if s.out_dir is None:
            return
        out = Path(s.out_dir)
        save_subspace(out / "subspace.safetensors", self.solution, s.meta)
        write_json(out / "metrics.json", self.metrics)
        spectrum_plot(problem, self.solution, out / "spectrum.png", getattr(self.solver, "rho", None))
        shown = s.z_eval[:1] if s.z_eval is not None and len(s.z_eval) else self.first_z
        base = self.generator.encode(shown, s.space)[0]
        direction_grid(self.generator, s.space, base, self.solution.directions[:, : s.grid_directions], s.steps,
                       s.magnitude, out / "directions.png")
        if self.logger is not None:
            log_run(self.logger, out, self.metrics)

# Two commands do all set-up: `make run` (default experiment) and `make test` (the CPU test suite).
PY := .venv/bin/python
ARGS ?=

.PHONY: run test test-slow bench gallery trained-analyzers clean

.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: .venv/.installed  ## discover the default subspace on toyface (add ARGS="key=value ...")
	$(PY) -m ice_exp $(ARGS)

test: .venv/.installed  ## lint, the layer contracts (pyproject.toml), then the CPU test suite (no GPU, W&B disabled)
	$(PY) -m ruff check .
	.venv/bin/lint-imports
	OMP_NUM_THREADS=1 WANDB_MODE=disabled $(PY) -m pytest -q -n 2 --durations=15 $(ARGS)  # two workers, a core each

test-slow: .venv/.installed
	WANDB_MODE=disabled $(PY) -m pytest -q -m slow $(ARGS)

bench: .venv/.installed  ## CPU benchmarks: batched vs loop JᵀJ, rendering speed
	$(PY) -m experiments.benchmarks.cpu $(ARGS)

gallery: .venv/.installed  ## the README's toyface gallery and factor strips
	$(PY) -m ice_exp.generators.toyface.gallery --out docs $(ARGS)

trained-analyzers: .venv/.installed  ## experiments/results/trained_analyzers/RESULTS.md: train BiSeNet + FAN, score, seven tasks, glue (~2 h CPU)
	$(PY) -m experiments.trained_analyzers.reproduce $(ARGS)

clean:
	rm -rf outputs/* multirun

"""Engine benchmarks: ``python -m experiments.benchmarks.cpu`` and ``python -m experiments.benchmarks.gpu``;
measured tables in RESULTS.md."""

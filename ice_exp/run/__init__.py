"""The run layer: one run's steps (build, accumulate via the engine, solve, evaluate, write, pictures,
explain, log) and what spans runs (comparison, explanation of finished runs, sweeps, the report table, the
protocol every app shares). Above every model layer; imported only by the apps."""

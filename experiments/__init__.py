"""The project's experiments, three kinds kept apart:

- ``configs/``: experiment configs, the Hydra group ``experiment`` (``ice-exp experiment=toyface/mouth_shape``;
  conf/experiment links here): ``toyface/`` (the embedded world, with ``seed/`` and ``consensus/`` variants)
  and ``stylegan2/`` (the same recipes for real weights).
- ``benchmarks/``, ``peers/``, ``worlds/``, ``trained_analyzers/``, ``counterfactual/``: measurement scripts, run as modules from
  the repository root (``python -m experiments.worlds.tiers``).
- ``results/``: what those scripts measured, committed (tables, one JSON or CSV row per case).
"""

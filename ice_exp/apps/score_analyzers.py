"""``ice-score-analyzers analyzer.parser.path=... analyzer.landmarker.path=...``: score the parser and landmark
model of the run configs (conf/analyzer) against the toyface oracles on the protocol's worlds
(ice_exp.training.analyzers.scores; config: conf/score_analyzers.yaml)."""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ice_exp.config import CONF_DIR
from ice_exp.run.build import build_analyzers
from ice_exp.training.analyzers.scores import ScoreFaces, markdown, score, write_scores


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="score_analyzers")
def main(cfg: DictConfig) -> None:
    analyzers = build_analyzers(cfg.analyzer)
    faces = ScoreFaces(**OmegaConf.to_container(cfg.analyzer_scores, resolve=True))
    results = score(analyzers.parser, analyzers.landmarker, faces)
    print(markdown(results["summary"], len(faces.worlds)), end="")
    if cfg.out:
        write_scores(results, Path(cfg.out), faces)
        print(f"scores: {cfg.out}")


if __name__ == "__main__":
    main()

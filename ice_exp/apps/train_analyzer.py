"""``ice-train-analyzer analyzer_net=bisenet|fan``: train BiSeNet or FAN on toyface against the oracles (once,
cached in the published file layout), then score the file through the project's own analyzer builders on
worlds never trained on (recipe and scores: ice_exp.training.analyzers; config: conf/train_analyzer.yaml)."""
from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig, OmegaConf

from ice_exp.analyzers.base import Parser
from ice_exp.config import CONF_DIR
from ice_exp.training.analyzers.data import ToyfaceData
from ice_exp.training.analyzers.recipe import load_analyzer, trained_weights
from ice_exp.training.analyzers.scores import ScoreFaces, markdown, score, setback_warning, write_scores


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train_analyzer")
def main(cfg: DictConfig) -> None:
    net = OmegaConf.to_container(cfg.analyzer_net, resolve=True)
    path = trained_weights(net, ToyfaceData(**cfg.data), cfg.seed, cfg.accelerator, cfg.cache_dir)
    print(f"weights: {path}")
    if cfg.score:
        faces = ScoreFaces(**OmegaConf.to_container(cfg.analyzer_scores, resolve=True))
        analyzer = load_analyzer(net, path)
        results = score(analyzer, None, faces) if isinstance(analyzer, Parser) else score(None, analyzer, faces)
        record = json.loads((path.parent / "record.json").read_text())
        write_scores(results, path.parent / "scores.json", faces, record)
        print(markdown(results["summary"], len(faces.worlds)) + f"scores: {path.parent / 'scores.md'}")
        print(setback_warning(record) or "training loss: no setback")


if __name__ == "__main__":
    main()

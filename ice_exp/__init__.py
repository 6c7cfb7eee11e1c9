"""ice-exp: interpretable controls of face generators (ICE) and the counterfactual explanations they give.

Importing the package registers the config schema with Hydra's ConfigStore (ice_exp.config), so a notebook can
compose the run configs directly: ``initialize_config_dir(config_dir=ice_exp.CONF_DIR)``, then
``compose("config", overrides=[...])``."""
from ice_exp.config import CONF_DIR

__all__ = ["CONF_DIR"]

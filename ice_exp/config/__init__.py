"""The config layer: the schema (keys, types, choices), the value rules (ranges) that the up-front check
and the classes both read, the task files' loader, and the check of a composed config. Light on purpose
(no torch): the apps check a config before anything heavy is imported. Importing it registers the schema."""
from ice_exp.config.checks import CONF_DIR, ConfigError, check_config

__all__ = ["CONF_DIR", "ConfigError", "check_config"]

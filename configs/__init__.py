"""Configuration: YAML groups in configs/{experiment,mixer,data}/ composed over the dataclass schema."""
from .compose import ConfigError, compose_config, config_to_dict

__all__ = ["ConfigError", "compose_config", "config_to_dict"]

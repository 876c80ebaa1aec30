"""Run configuration: the typed schema shared by the command line and Python, YAML presets, overrides."""

from rl_agents.config.defaults import with_num_envs
from rl_agents.config.schema import (
    ConfigError,
    DistributedConfig,
    RunConfig,
    TrainerConfig,
    apply_overrides,
    build_agents,
    config_from_dict,
    config_to_dict,
    is_out_of_memory,
    list_presets,
    load_preset,
    load_yaml,
    make_config_envs,
    parse_agent_names,
    preset_fits,
    preset_path,
    trainer_setting_types,
)

__all__ = [
    "ConfigError",
    "DistributedConfig",
    "RunConfig",
    "TrainerConfig",
    "apply_overrides",
    "build_agents",
    "config_from_dict",
    "config_to_dict",
    "is_out_of_memory",
    "list_presets",
    "load_preset",
    "load_yaml",
    "make_config_envs",
    "parse_agent_names",
    "preset_fits",
    "preset_path",
    "trainer_setting_types",
    "with_num_envs",
]

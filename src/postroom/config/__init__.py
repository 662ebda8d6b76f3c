"""Declarative configuration: records from a YAML file, applied idempotently."""

from postroom.config.apply import ApplyReport, apply_config, load_config

__all__ = ["ApplyReport", "apply_config", "load_config"]

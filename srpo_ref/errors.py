"""Errors shared by modules that must not import each other (srpo_ref.config imports
srpo_ref.loggers for its names, and the loggers raise the config's error)."""


class ConfigError(ValueError):
    """A configuration value that cannot be used: the message names the key."""

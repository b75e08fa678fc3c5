"""The error every program raises for a config file it cannot use (kerbside.core.checks reads
and explains them)."""

from __future__ import annotations


class ConfigError(Exception):
    """A config file that cannot be used; the message is one line and names the key."""

"""The collector: ingest, validation, sessions, parking rules, alerts, store, API."""

__version__ = "0.1.0"

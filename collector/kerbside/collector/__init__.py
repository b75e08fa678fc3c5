"""The collector: ingest, validation, sessions, parking rules, alerts, store, API."""

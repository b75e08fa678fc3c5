"""The site file, loaded with its parsed YAML kept beside the store (keyed by the file's hash).

PyYAML builds a 100,000-bay site in about a minute; JSON of the same data loads in about a
second. The cached data is validated again on every load, exactly as the file would be.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import yaml

from kerbside.collector.config import DEFAULT_STORE_PATH, CollectorConfig
from kerbside.core.site import Site, load_site, parse_site


def site_cache_path(config: CollectorConfig) -> Path:
    """Beside the SQLite store; with a PostgreSQL store, in the collector's state directory
    (systemd's ``StateDirectory=``, else the directory SQLite's default file would be in)."""
    if config.store.url is not None:
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(state or DEFAULT_STORE_PATH.parent) / "site-cache.json"
    return config.store.path.with_name(config.store.path.name + ".site-cache.json")


def load_site_cached(path: Path, cache: Path) -> Site:
    try:
        raw = path.read_bytes()
    except OSError:
        return load_site(path)  # the same one-line error as always
    digest = hashlib.sha256(raw).hexdigest()
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("sha256") == digest:
            return parse_site(cached["data"], source=str(path))
    except (OSError, ValueError, AttributeError):
        pass
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=loader)  # noqa: S506 (a safe loader)
    except (yaml.YAMLError, UnicodeDecodeError):
        return load_site(path)
    site = parse_site(data, source=str(path))
    with contextlib.suppress(OSError, TypeError, ValueError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sha256": digest, "data": data}), encoding="utf-8")
        tmp.replace(cache)
    return site

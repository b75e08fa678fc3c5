"""The demo's collector: its config, its tokens, and a small client of its HTTP API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml


class Api:
    def __init__(self, port: int, tokens: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.tokens = tokens

    def call(self, method: str, path: str, role: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.base + path, data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {self.tokens[role]}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def items(self, path: str, role: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        sep = "&" if "?" in path else "?"
        while True:
            query = f"{sep}limit=500" + (f"&cursor={cursor}" if cursor else "")
            page = self.call("GET", path + query, role)
            out += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def signin_link(self, officer: str, minutes: float) -> str:
        """A one-time link that signs a browser into the officers' page as ``officer``."""
        made = self.call(
            "POST", "/api/v1/signin-links", "admin", {"name": officer, "minutes": minutes}
        )
        return str(made["url"])

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False


def make_tokens(workdir: Path) -> tuple[Path, dict[str, str]]:
    """A tokens file (hashes only, as the collector wants) and the demo's tokens themselves,
    also kept in ``demo-tokens.json`` (owner-only) so scripts and tests can use the API."""
    from kerbside.collector.tokens import (  # noqa: PLC0415 - the collector extra
        TokenHolder,
        hash_token,
        new_token,
        save_tokens,
    )

    names = {
        "officer": "demo-officer",
        "provider": "demo-payments",
        "analyst": "demo-analyst",
        "admin": "demo-admin",
    }
    tokens = {role: new_token() for role in names}
    path = workdir / "tokens.yaml"
    save_tokens(path, [TokenHolder(names[r], r, hash_token(t)) for r, t in tokens.items()])
    plain = workdir / "demo-tokens.json"
    plain.write_text(json.dumps(tokens, indent=1) + "\n")
    plain.chmod(0o600)
    return path, tokens


def collector_config(
    workdir: Path, site: Path, *, mqtt_port: int, protocol: str, http_port: int, tokens: Path
) -> Path:
    config = {
        "site": str(site),
        "mqtt": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "protocol": protocol,
            "client_id": "kerbside-demo-collector",
        },
        "store": {"path": str(workdir / "collector.db")},
        "http": {"host": "127.0.0.1", "port": http_port},
        "tokens_file": str(tokens),
        # Short, for a demo: alerts show a few seconds after they fall due.
        "alert_delay_s": 5,
        "maintenance": {"gateway_offline_after_s": 90, "low_battery_mv": 3300},
    }
    path = workdir / "collector.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path

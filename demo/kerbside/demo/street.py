"""The demo's street: a Camden-like site file (docs/site-file.md) with demo-length limits.

Controlled at all hours (so the demo shows enforcement whenever it runs), observation and grace of
one minute and maximum stays of three or four minutes, so the first alerts come about a minute and
a half in. Bays are paid, resident, loading, disabled and (from the 7th of a street) limited,
spread over the gateways' streets; each gateway also runs the simulator and an edge agent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kerbside.demo.processes import Child, Children, DemoError, module_argv, wait_while_running

# Real streets around Camden Town: (street, gateway id, first bay's lat, lon, step along the kerb)
STREETS: tuple[tuple[str, str, float, float, float, float], ...] = (
    ("Parkway", "gw-parkway-01", 51.53782, -0.14521, -0.00004, 0.00011),
    ("Delancey Street", "gw-delancey-01", 51.53689, -0.14390, -0.00002, 0.00012),
    ("Arlington Road", "gw-arlington-01", 51.53615, -0.14302, 0.00011, -0.00003),
    ("Inverness Street", "gw-inverness-01", 51.53862, -0.14403, -0.00001, 0.00010),
    ("Albert Street", "gw-albert-01", 51.53703, -0.14198, 0.00010, 0.00002),
    ("Jamestown Road", "gw-jamestown-01", 51.53920, -0.14560, -0.00003, 0.00010),
    ("Pratt Street", "gw-pratt-01", 51.53651, -0.13978, 0.00002, 0.00011),
    ("Bayham Street", "gw-bayham-01", 51.53596, -0.13905, 0.00011, 0.00001),
)

# The kerb of every street repeats this mix: mostly paid, then resident, loading, disabled, limited.
KINDS = ("paid", "resident", "paid", "loading", "disabled", "paid", "limited", "resident")
_CODES = {"paid": "P", "resident": "R", "loading": "L", "disabled": "D", "limited": "T"}


def _code(street: str) -> str:
    return street[:3].upper()


def demo_site(gateways: int = 3, bays_per_gateway: int = 5) -> dict[str, Any]:
    """The site file's mapping: one zone, ``gateways`` streets of ``bays_per_gateway`` bays."""
    if not 1 <= gateways <= len(STREETS):
        raise ValueError(f"--gateways must be 1..{len(STREETS)}")
    if not 1 <= bays_per_gateway <= 200:
        raise ValueError("--bays-per-gateway must be 1..200")
    bays: list[dict[str, Any]] = []
    sensor = 0
    for street, gateway, lat, lon, dlat, dlon in STREETS[:gateways]:
        for index in range(bays_per_gateway):
            kind = KINDS[index % len(KINDS)]
            sensor += 1
            bay: dict[str, Any] = {
                "id": f"CA-F-{_code(street)}-{_CODES[kind]}{index + 1:03d}",
                "zone": "CA-F",
                "street": street,
                "kind": kind,
                "location": {
                    "lat": round(lat + index * dlat, 6),
                    "lon": round(lon + index * dlon, 6),
                },
                "sensor": f"S-{sensor:06d}",
                "gateway": gateway,
            }
            if kind in ("paid", "limited"):
                bay["max_stay_minutes"] = 3 if index % 2 else 4
            elif kind in ("loading", "disabled"):
                bay["max_stay_minutes"] = 3
            bays.append(bay)
    return {
        "site": "camden-demo",
        "timezone": "Europe/London",
        "defaults": {"grace_minutes": 1, "observation_minutes": 1},
        "zones": [
            {
                "id": "CA-F",
                "name": "Camden Town (demo: controlled at all hours)",
                "controlled_hours": "any",
            }
        ],
        "bays": bays,
    }


@dataclass
class Street:
    gateways: list[str]
    rights: list[dict[str, Any]]  # journal `right` records of every gateway's plan, by start
    bays: int


def write_site(workdir: Path, gateways: int, bays_per_gateway: int) -> tuple[Path, Street]:
    from kerbside.core.site import SiteError, load_site  # noqa: PLC0415

    try:
        data = demo_site(gateways, bays_per_gateway)
    except ValueError as exc:
        raise DemoError(str(exc)) from exc
    path = workdir / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        site = load_site(path)
    except SiteError as exc:  # a bug here, not the user's: say where the file is
        raise DemoError(f"the demo's site file is invalid ({path}): {exc}") from exc
    ids = list(dict.fromkeys(b.gateway for b in site.bays.values() if b.gateway))
    return path, Street(ids, [], len(site.bays))


# The drivers' first arrivals, seconds after the street starts: once the agent has confirmed
# each bay's empty level (its sensor's first frame, within a second, held the confirmation time
# of 10 s), so that each arrival is seen as one, from its start.
FIRST_ARRIVAL_S = ("11", "16")


def start_sim(children: Children, gateway: str, site: Path, seed: int) -> Child:
    """The firmware simulator serving the gateway's bays on ptys with planned drivers. Its street
    (the sensors, and the drivers' clock) starts when its agent (``start_edge``) opens the
    ports, so the agent hears every sensor's first frame over an empty bay, however long it
    takes to start."""
    gw_dir = children.workdir / gateway
    gw_dir.mkdir(parents=True, exist_ok=True)
    (gw_dir / "plan.json").unlink(missing_ok=True)  # written anew when the street starts
    return children.start(
        f"sim-{gateway}",
        [
            *module_argv("kerbside.sim.cli"),
            "serial",
            "--wait-for-reader",
            "--site",
            str(site),
            "--gateway",
            gateway,
            "--seed",
            str(seed),
            "--quick",
            "--first-arrival-s",
            *FIRST_ARRIVAL_S,
            "--dir",
            str(gw_dir),
            "--config-out",
            str(gw_dir / "edge.yaml"),
            "--plan-out",
            str(gw_dir / "plan.json"),
        ],
        stdout=gw_dir / "ttys.txt",
    )


def start_edge(children: Children, sim: Child, gateway: str, mqtt_port: int) -> Child:
    """Once the simulator's ptys exist, a real edge agent reading them."""
    gw_dir = children.workdir / gateway
    ready, edge_yaml = gw_dir / "ttys.txt", gw_dir / "edge.yaml"
    wait_while_running(
        lambda: ready.exists() and bool(ready.read_text().strip()),
        [sim],
        30,
        f"{sim.name} did not open its ports (see {sim.log})",
    )
    config = yaml.safe_load(edge_yaml.read_text())
    config["mqtt"] = {**config.get("mqtt", {}), "host": "127.0.0.1", "port": mqtt_port}
    config["health_interval_s"] = 15
    config["clock"] = {"require_sync": False}  # a laptop's clock: no NTP check in a demo
    edge_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    return children.start(
        f"edge-{gateway}", [*module_argv("kerbside.edge.cli"), "run", "--config", str(edge_yaml)]
    )


def planned_rights(children: Children, sim: Child, edge: Child, gateway: str) -> list[Any]:
    """The rights the drivers will pay for (the simulator's plan), once its street has started:
    when the agent has opened its ports."""
    plan_file = children.workdir / gateway / "plan.json"
    late = f"{edge.name} did not open its ports (see {edge.log})"
    wait_while_running(plan_file.exists, [sim, edge], 60, late)
    plan = json.loads(plan_file.read_text())
    return [dict(r) for r in plan["rights"]]

"""The demo's street: a Camden-like site file (SPEC section 6) with demo-length limits.

Controlled at all hours (so the demo shows enforcement whenever it runs), observation and grace of
one minute and maximum stays of three or four minutes, so alerts come within about two minutes.
Bays are paid, resident, loading, disabled and limited, spread over the gateways' streets.
"""

from __future__ import annotations

from typing import Any

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

"""What the officers' page is served with: the web-app manifest and its icons, /favicon.ico,
every asset the page links; and the alert items it reads carry the bay's kind and maximum stay
(list, one alert, the officer's actions and the stream) and the right held during the stay, on
the API only."""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import httpx

from kerbside.core.instants import format_instant, parse_instant
from tests.collector.api.conftest import ApiServer, token_of
from tests.collector.api.harness import site_data
from tests.collector.api.test_api_sse import Stream
from tests.helpers import present

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOUR = 3_600_000


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_manifest_names_the_page_and_icons_of_the_sizes_it_says(shared_api: ApiServer) -> None:
    with httpx.Client(base_url=shared_api.url) as c:
        r = c.get("/officer/manifest.webmanifest")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/manifest+json"
        manifest = r.json()
        assert (manifest["start_url"], manifest["display"]) == ("/officer", "standalone")
        assert manifest["short_name"] == "Kerbside"
        sizes = set()
        for icon in manifest["icons"]:
            got = c.get(icon["src"])
            assert got.status_code == 200, icon
            assert got.headers["content-type"].startswith(icon["type"]), icon
            if icon["type"] == "image/png":
                w, h = _png_size(got.content)
                assert icon["sizes"] == f"{w}x{h}", icon
                sizes.add((w, icon.get("purpose", "any")))
            else:
                assert icon["sizes"] == "any"
                assert got.text.lstrip().startswith("<svg")
        # What browsers need to install the page: 192 and 512 px, and one for masked shapes.
        assert {(192, "any"), (512, "any"), (512, "maskable")} <= sizes


def test_favicon_is_an_icon_file(shared_api: ApiServer) -> None:
    with httpx.Client(base_url=shared_api.url) as c:
        r = c.get("/favicon.ico")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/vnd.microsoft.icon"
    reserved, kind, count = struct.unpack("<HHH", r.content[:6])
    assert (reserved, kind, count) == (0, 1, 1)
    width, height, *_, size, offset = struct.unpack("<BBBBHHII", r.content[6:22])
    assert _png_size(r.content[offset : offset + size]) == (width, height) == (32, 32)


def test_every_asset_the_page_links_is_served(shared_api: ApiServer) -> None:
    with httpx.Client(base_url=shared_api.url) as c:
        html = c.get("/officer").text
        links = re.findall(r'(?:href|src)="(/[^"]+)"', html)
        assert {"/officer/manifest.webmanifest", "/favicon.ico"} <= set(links)
        for link in links:
            assert c.get(link).status_code == 200, link


def test_the_page_s_files_are_revalidated_with_their_etag(shared_api: ApiServer) -> None:
    with httpx.Client(base_url=shared_api.url) as c:
        for path in ("/officer", "/officer/static/officer.js", "/officer/static/icon-192.png"):
            first = c.get(path)
            assert first.status_code == 200, path
            etag = first.headers["etag"]
            again = c.get(path, headers={"If-None-Match": etag})
            assert (again.status_code, again.content) == (304, b""), path
            assert again.headers["etag"] == etag
            other = c.get(path, headers={"If-None-Match": '"something-else"'})
            assert other.content == first.content, path
        assert c.get("/officer").headers["content-type"] == "text/html; charset=utf-8"
        assert (
            c.get("/officer/static/officer.js")
            .headers["content-type"]
            .startswith("text/javascript")
        )
        missing = c.get("/officer/static/nothing.js")
        assert missing.status_code == 404
        assert "nothing.js" in missing.json()["detail"]
        assert c.get("/officer/static/..%2Fstatic%2Fofficer.html").status_code == 404


def _bay_facts(item: dict[str, Any]) -> tuple[Any, Any]:
    return item["bay_kind"], item["max_stay_minutes"]


def test_alert_items_carry_the_bay_kind_and_max_stay(api: ApiServer) -> None:
    api = api.fresh(
        site=site_data(bays={"CA-F-B00000": {"kind": "resident", "max_stay_minutes": 240}})
    )
    headers = {"Authorization": f"Bearer {token_of('officer')}"}
    stream = Stream(api, headers, {"since": 0})
    try:
        record = api.call(lambda: api.service.raise_alert("CA-F-B00000", "unpaid"))
        other = api.call(lambda: api.service.raise_alert("CA-G-B00001", "unpaid"))
        streamed = [json.loads(stream.next()["data"]) for _ in range(2)]
    finally:
        stream.close()
    assert [_bay_facts(item) for item in streamed] == [("resident", 240), ("paid", None)]
    with api.client("officer") as c:
        listed = c.get("/api/v1/alerts").json()["items"]
        one = c.get(f"/api/v1/alerts/{record['alert_id']}").json()
        acked = c.post(f"/api/v1/alerts/{other['alert_id']}/ack", json={"officer": "x"}).json()
    assert {i["alert_id"]: _bay_facts(i) for i in listed} == {
        record["alert_id"]: ("resident", 240),
        other["alert_id"]: ("paid", None),
    }
    assert _bay_facts(one) == ("resident", 240)
    assert _bay_facts(acked) == ("paid", None)
    # The record itself (what MQTT carries) is unchanged.
    assert "bay_kind" not in present(api.call(lambda: api.service.store.alert(record["alert_id"])))


def _held(item: dict[str, Any]) -> tuple[Any, Any]:
    return item["right_kind"], item["right_until"]


def test_alert_items_carry_the_right_held_during_the_stay(api: ApiServer) -> None:
    record = api.call(lambda: api.service.raise_alert("CA-F-B00000", "unpaid"))
    arrival = parse_instant(record["session_start"])

    def item() -> dict[str, Any]:
        with api.client("officer") as c:
            return dict(c.get(f"/api/v1/alerts/{record['alert_id']}").json())

    assert _held(item()) == (None, None)

    def right(right_id: str, kind: str, start: int, end: int, **place: str) -> None:
        body = {"right_id": right_id, "kind": kind, "start": format_instant(start),
                "end": format_instant(end), **place}  # fmt: skip
        with api.client("provider") as c:
            assert c.post("/api/v1/rights", json=body).status_code < 300, body

    # Neither one that ended as the vehicle came, nor one bought for later, nor another bay's.
    right("before", "payment", arrival - HOUR, arrival, bay_id="CA-F-B00000")
    right("later", "payment", arrival + 10 * HOUR, arrival + 11 * HOUR, bay_id="CA-F-B00000")
    right("next-door", "payment", arrival - HOUR, arrival + HOUR, bay_id="CA-F-B00002")
    assert _held(item()) == (None, None)
    # A blanket permit for the bay's zone is held (and clears the unpaid alert).
    right("zone-permit", "permit", arrival - HOUR, arrival + 3 * HOUR, zone_id="CA-F")
    cleared = item()
    assert cleared["clear_reason"] == "right_added"
    assert _held(cleared) == ("permit", format_instant(arrival + 3 * HOUR))
    # The same in the list.
    with api.client("analyst") as c:
        listed = c.get("/api/v1/alerts", params={"status": "cleared"}).json()["items"]
    assert [_held(i) for i in listed if i["alert_id"] == record["alert_id"]] == [
        ("permit", format_instant(arrival + 3 * HOUR))
    ]

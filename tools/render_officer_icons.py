"""Render the officers' page icons from ``icon.svg`` with Debian's Chromium (Playwright).

    python tools/render_officer_icons.py

Writes, beside the SVG: ``icon-192.png`` and ``icon-512.png`` (the web-app manifest's sizes),
``icon-maskable-512.png`` (full bleed, the drawing inside the central safe circle), the 180 px
``icon-180.png`` for iOS home screens (full bleed: iOS rounds the corners itself) and
``favicon.ico`` (one 32 px PNG inside an ICO, which every browser reads). Run it after changing
the SVG and commit what it writes; the collector only serves the files.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from playwright.sync_api import sync_playwright

STATIC = Path(__file__).resolve().parents[1] / "collector/kerbside/collector/api/static"
CHROMIUM = "/usr/bin/chromium"
BLUE = "#0b3d91"


def _page(svg: str, size: int, *, bleed: bool) -> str:
    if bleed:
        # The drawing at 72 % on a full square: inside the maskable safe zone (a circle of 80 %).
        inner = re.sub(r"<rect width=\"512\" height=\"512\" rx=\"96\"[^>]*/>", "", svg)
        inner = inner.replace("<svg ", '<svg width="72%" height="72%" ')
        return (
            f'<div style="width:{size}px;height:{size}px;background:{BLUE};display:flex;'
            f'align-items:center;justify-content:center">{inner}</div>'
        )
    return svg.replace("<svg ", f'<svg width="{size}" height="{size}" ')


def _ico(png: bytes, size: int) -> bytes:
    """An ICO holding one PNG image (the format allows PNG entries since Windows Vista)."""
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


def main() -> None:
    svg = (STATIC / "icon.svg").read_text(encoding="utf-8")
    wanted = {
        "icon-192.png": (192, False),
        "icon-512.png": (512, False),
        "icon-maskable-512.png": (512, True),
        "icon-180.png": (180, True),
        "favicon-32.png": (32, False),
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for name, (size, bleed) in wanted.items():
            page = browser.new_page(viewport={"width": size, "height": size})
            page.set_content(
                '<html><body style="margin:0">' + _page(svg, size, bleed=bleed) + "</body></html>"
            )
            png = page.screenshot(omit_background=True, type="png")
            page.close()
            if name == "favicon-32.png":
                (STATIC / "favicon.ico").write_bytes(_ico(png, size))
            else:
                (STATIC / name).write_bytes(png)
        browser.close()


if __name__ == "__main__":
    main()

"""The officers' page: a static shell (no assets from elsewhere), its web-app manifest and
icons; the page's calls need a token.

The page's files are read from the package once and served from memory, each with an ETag (a
phone revalidating gets a 304 and no body): no file is opened per request, so a collector at its
open-files limit, shedding connections, still serves the page officers need most."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from kerbside.collector.errors import NotFound

STATIC = Path(__file__).resolve().parent.parent / "static"
_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/vnd.microsoft.icon",
    ".webmanifest": "application/manifest+json",
}
_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# The page's own files change with a release: a phone asks again (a 304 while unchanged).
_REVALIDATE = {"Cache-Control": "no-cache"}
_DAY = {"Cache-Control": "public, max-age=86400"}
router = APIRouter(tags=["officer page"])


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Every file of the page, by name."""
    found = {}
    for path in sorted(STATIC.iterdir()):
        if path.is_file() and path.suffix in _TYPES:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            found[path.name] = Asset(body, _TYPES[path.suffix], etag)
    return found


def _serve(request: Request, name: str, headers: dict[str, str]) -> Response:
    asset = assets().get(name)
    if asset is None:
        raise NotFound(f"no file {name!r} on the officers' page")
    sent = {"ETag": asset.etag, **headers}
    wanted = request.headers.get("if-none-match", "")
    if asset.etag in (tag.strip().removeprefix("W/") for tag in wanted.split(",")):
        return Response(status_code=304, headers=sent)
    return Response(asset.body, media_type=asset.media_type, headers=sent)


@router.get("/officer", include_in_schema=True, summary="The officers' live page (HTML)")
async def officer_page(request: Request) -> Response:
    return _serve(request, "officer.html", _SECURITY)


@router.get("/officer/manifest.webmanifest", include_in_schema=False)
async def manifest(request: Request) -> Response:
    """Lets a phone add the page to its home screen as an app of its own."""
    return _serve(request, "manifest.webmanifest", _REVALIDATE)


@router.get("/officer/static/{name}", include_in_schema=False)
async def static(request: Request, name: str) -> Response:
    """The page's script, style sheet and icons."""
    return _serve(request, name, _DAY if name.startswith("icon") else _REVALIDATE)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon(request: Request) -> Response:
    return _serve(request, "favicon.ico", _DAY)


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/docs")

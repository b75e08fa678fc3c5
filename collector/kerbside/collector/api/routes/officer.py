"""The officers' page: a static shell (no assets from elsewhere), its web-app manifest and
icons; the page's calls need a token."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
router = APIRouter(tags=["officer page"])


@router.get("/officer", include_in_schema=True, summary="The officers' live page (HTML)")
async def officer_page() -> FileResponse:
    return FileResponse(STATIC / "officer.html", media_type="text/html", headers=_SECURITY)


@router.get("/officer/manifest.webmanifest", include_in_schema=False)
async def manifest() -> FileResponse:
    """Lets a phone add the page to its home screen as an app of its own."""
    return FileResponse(
        STATIC / "manifest.webmanifest",
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(
        STATIC / "favicon.ico",
        media_type="image/vnd.microsoft.icon",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/docs")

"""The officers' page's sign-in (signin.py): a session from a one-time link's code or from an
officer's token, who is signed in, sign-out; and the links an admin makes, with a QR code."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response, status

from kerbside.collector.api.deps import Admin, CurrentUser, authenticate, wall_ms
from kerbside.collector.api.errors import FieldError
from kerbside.collector.api.models import SessionBody, SessionInfo, SignInLink, SignInLinkBody
from kerbside.collector.config import HttpConfig
from kerbside.collector.signin import SESSION_COOKIE, SignInRefused, SignIns, link_url, qr_svg
from kerbside.core.instants import format_instant

router = APIRouter(tags=["officer page"])


def _signins(request: Request) -> SignIns:
    signins: SignIns = request.app.state.signins
    return signins


@router.post(
    "/api/v1/session",
    response_model=SessionInfo,
    summary="Open the page's session: a sign-in link's code, or an officer's bearer token",
    responses={401: {"description": "link used, expired or revoked; or no valid token"}},
)
async def open_session(
    request: Request, response: Response, body: Annotated[SessionBody | None, Body()] = None
) -> dict[str, Any]:
    signins, now = _signins(request), wall_ms()
    if body is None and "authorization" not in request.headers:
        # a session does not renew itself: that takes the link or the token again
        raise HTTPException(401, "give a sign-in link's code or an officer's token")
    try:
        if body is not None:
            opened = signins.redeem(body.code, now)
        else:
            opened = signins.open_with_token(authenticate(request), now)
    except SignInRefused as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    session = opened.session
    response.set_cookie(
        SESSION_COOKIE,
        opened.session_id,
        max_age=(session.expires - now) // 1000,
        httponly=True,
        samesite="strict",
        # https as the client sees it: behind a trusted TLS proxy, from X-Forwarded-Proto
        secure=request.url.scheme == "https",
        path="/",
    )
    return {"name": session.name, "role": "officer", "expires_at": format_instant(session.expires)}


@router.get("/api/v1/session", response_model=SessionInfo, summary="Who is signed in")
async def whoami(request: Request, holder: CurrentUser) -> dict[str, Any]:
    expires = None
    session_id = request.cookies.get(SESSION_COOKIE)
    if "authorization" not in request.headers and session_id:
        found = _signins(request).holder(session_id, wall_ms())
        if found is not None:
            expires = format_instant(found[1].expires)
    return {"name": holder.name, "role": holder.role, "expires_at": expires}


@router.delete("/api/v1/session", summary="Sign out: end the session on the server")
async def close_session(request: Request, response: Response) -> dict[str, bool]:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        _signins(request).end(session_id)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return {"signed_out": True}


@router.post(
    "/api/v1/signin-links",
    response_model=SignInLink,
    status_code=status.HTTP_201_CREATED,
    summary="A one-time sign-in link (and its QR code) for an officer's phone",
)
async def make_link(request: Request, body: SignInLinkBody, _: Admin) -> dict[str, Any]:
    try:
        code, expires = _signins(request).make_link(body.name, wall_ms(), body.minutes)
    except SignInRefused as exc:
        raise FieldError(["body", "name"], exc.reason) from exc
    http: HttpConfig | None = request.app.state.http
    base = http.public_url if http is not None and http.public_url else str(request.base_url)
    url = link_url(base, code)
    return {
        "name": body.name,
        "url": url,
        "expires_at": format_instant(expires),
        "qr_svg": qr_svg(url),
    }

"""Dependencies of the routes: the read side, the commands, the alert feed, the caller and
their role.

A caller is identified by ``Authorization: Bearer <token>`` or, for the officers' page (whose
EventSource cannot send headers), by its session cookie: a random id the store knows (signin.py),
an officer's only, ended at sign-out, expiry or when the officer's token is revoked. No or
unknown token or session: 401. Known caller, role not allowed on the route: 403. ``admin`` may
do everything.

Every route and dependency is ``async def``: they run on the collector's loop, which owns the
store and the core (FastAPI would run a plain ``def`` in a worker thread, beside the loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status

from kerbside.collector.api.siteview import SiteCache, SiteView
from kerbside.collector.commands import Commands
from kerbside.collector.feed import AlertFeed
from kerbside.collector.queries import Queries
from kerbside.collector.signin import SESSION_COOKIE, SignIns
from kerbside.collector.tokens import TokenHolder, TokenRegistry

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kerbside"'}


async def get_queries(request: Request) -> Queries:
    queries: Queries = request.app.state.queries
    return queries


async def get_commands(request: Request) -> Commands:
    commands: Commands = request.app.state.commands
    return commands


async def get_feed(request: Request) -> AlertFeed:
    feed: AlertFeed = request.app.state.feed
    return feed


async def get_site(request: Request) -> SiteView:
    cache: SiteCache = request.app.state.site_cache
    queries: Queries = request.app.state.queries
    return cache.get(queries.site)


async def get_now(request: Request) -> int:
    """The collector's clock (epoch ms): the wall clock, or the test clock it runs on."""
    queries: Queries = request.app.state.queries
    return queries.now()


QueriesDep = Annotated[Queries, Depends(get_queries)]
CommandsDep = Annotated[Commands, Depends(get_commands)]
FeedDep = Annotated[AlertFeed, Depends(get_feed)]
SiteDep = Annotated[SiteView, Depends(get_site)]
Now = Annotated[int, Depends(get_now)]


def wall_ms() -> int:
    """Sign-ins run on real time, whatever clock the rules run on."""
    return time.time_ns() // 1_000_000


def authenticate(request: Request) -> TokenHolder:
    """The caller's holder, or 401. The Authorization header wins over the session cookie."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        holder = None
        if scheme.lower() == "bearer" and value.strip():
            registry: TokenRegistry = request.app.state.tokens
            holder = registry.lookup(value.strip())
        if holder is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "unknown or revoked token", _BEARER_CHALLENGE
            )
        return holder
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        signins: SignIns = request.app.state.signins
        found = signins.holder(session_id, wall_ms())
        if found is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "signed out: the session ended or expired, or its token was revoked",
                _BEARER_CHALLENGE,
            )
        return found[0]
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED, "a bearer token is required", _BEARER_CHALLENGE
    )


def still_allowed(request: Request, roles: frozenset[str]) -> bool:
    """Whether the caller of a long request (the alert stream) may still have it."""
    try:
        return authenticate(request).role in roles
    except HTTPException:
        return False


async def current_holder(request: Request) -> TokenHolder:
    return authenticate(request)


CurrentUser = Annotated[TokenHolder, Depends(current_holder)]


def require(*roles: str) -> Callable[[Request], Coroutine[Any, Any, TokenHolder]]:
    """A dependency that lets through callers with one of ``roles`` (or ``admin``). One flat
    dependency rather than a chain: FastAPI's per-dependency cost shows on the hot list routes."""
    allowed = frozenset((*roles, "admin"))

    async def check(request: Request) -> TokenHolder:
        holder = authenticate(request)
        if holder.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {holder.role} may not do this; needs {' or '.join(sorted(allowed))}",
            )
        return holder

    return check


Officer = Annotated[TokenHolder, Depends(require("officer"))]
Analyst = Annotated[TokenHolder, Depends(require("analyst"))]
OfficerOrAnalyst = Annotated[TokenHolder, Depends(require("officer", "analyst"))]
Provider = Annotated[TokenHolder, Depends(require("provider"))]
Admin = Annotated[TokenHolder, Depends(require())]

"""Officers' sign-in: one-time links an admin makes, and the server-side sessions they open.

An admin makes a link for an officer who has a token (``kerbside-collector token link NAME`` or
``POST /api/v1/signin-links``): ``<public url>/officer#signin=<code>``, shown as a QR code. The
officer's phone opens it; the page trades the code, once, for a session: a random id in an
HttpOnly cookie. The store keeps only SHA-256 of codes and session ids, so its rows open
nothing, and it is the collector's store (not process memory) so that every collector behind a
load balancer knows every session.

A session is an officer's only (whatever other role a link or token might name), ends at its
expiry, at sign-out, and as soon as the officer's token is revoked or replaced: each use checks
that the token it was opened with is still the one the tokens file holds for that name.

``SignIns`` is the logic, with ``now`` passed in; ``SignInStore`` is what it needs of a store.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Protocol

from kerbside.collector.errors import CollectorError
from kerbside.collector.tokens import TokenHolder, TokenRegistry
from kerbside.core.instants import Instant

OFFICER = "officer"
SESSION_COOKIE = "kerbside_session"
MINUTE_MS = 60_000


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class OfficerSession:
    id_sha256: str
    name: str
    token_sha256: str  # the token the session was opened with; revoking it ends the session
    created: Instant
    expires: Instant


@dataclass(frozen=True)
class SignInLink:
    code_sha256: str
    name: str
    token_sha256: str
    created: Instant
    expires: Instant


class SignInStore(Protocol):
    """The store's part in sign-in. Writes are single statements, each durable on return."""

    def put_officer_session(self, session: OfficerSession) -> None: ...

    def officer_session(self, id_sha256: str) -> OfficerSession | None: ...

    def end_officer_session(self, id_sha256: str) -> None: ...

    def end_officer_sessions(self, name: str) -> int:
        """End every session and unused link of ``name``; how many there were."""
        ...

    def put_signin_link(self, link: SignInLink) -> None: ...

    def take_signin_link(self, code_sha256: str) -> SignInLink | None:
        """The link, removed as it is read (so a second use finds nothing), or None."""
        ...

    def prune_sign_ins(self, now: Instant) -> int:
        """Forget expired sessions and links; how many."""
        ...


class SignInRefused(CollectorError):  # noqa: N818 (the API maps it to 401/403/404)
    """A sign-in that cannot be given; ``reason`` says why, in words for the officer."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Opened:
    """A new session: its id (for the cookie, never stored) and what the store keeps."""

    session_id: str
    session: OfficerSession


class SignIns:
    def __init__(
        self,
        store: SignInStore,
        tokens: TokenRegistry,
        *,
        session_minutes: float = 12 * 60,
        link_minutes: float = 15,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.session_ms = int(session_minutes * MINUTE_MS)
        self.link_ms = int(link_minutes * MINUTE_MS)

    def _officer(self, name: str) -> TokenHolder:
        holder = self.tokens.by_name(name, fresh=True)
        if holder is None:
            raise SignInRefused(f"no token named {name}", 404)
        if holder.role != OFFICER:
            raise SignInRefused(f"{name} is not an officer ({holder.role})", 403)
        return holder

    def make_link(
        self, name: str, now: Instant, minutes: float | None = None
    ) -> tuple[str, Instant]:
        """A one-time sign-in code for officer ``name``; returns it and its expiry."""
        holder = self._officer(name)
        self.store.prune_sign_ins(now)  # links are made rarely: a good moment to tidy up
        code = secrets.token_urlsafe(24)
        expires = now + (self.link_ms if minutes is None else int(minutes * MINUTE_MS))
        self.store.put_signin_link(
            SignInLink(digest(code), holder.name, holder.sha256, now, expires)
        )
        return code, expires

    def redeem(self, code: str, now: Instant) -> Opened:
        """Trade a link's code for a session, once."""
        link = self.store.take_signin_link(digest(code))
        if link is None or link.expires <= now:
            raise SignInRefused("this sign-in link has been used or has expired")
        holder = self.tokens.by_name(link.name, fresh=True)
        if holder is None or holder.sha256 != link.token_sha256 or holder.role != OFFICER:
            raise SignInRefused("this sign-in link was revoked with its officer's token")
        return self._open(holder, now)

    def open_with_token(self, holder: TokenHolder, now: Instant) -> Opened:
        """A session for a holder who showed their token (typed on the phone)."""
        if holder.role != OFFICER:
            raise SignInRefused("only an officer's token opens a session on this page", 403)
        return self._open(holder, now)

    def _open(self, holder: TokenHolder, now: Instant) -> Opened:
        self.store.prune_sign_ins(now)
        session_id = secrets.token_urlsafe(32)
        session = OfficerSession(
            digest(session_id), holder.name, holder.sha256, now, now + self.session_ms
        )
        self.store.put_officer_session(session)
        return Opened(session_id, session)

    def holder(self, session_id: str, now: Instant) -> tuple[TokenHolder, OfficerSession] | None:
        """Who a live session belongs to, or None (unknown, expired or its token revoked)."""
        session = self.store.officer_session(digest(session_id))
        if session is None:
            return None
        holder = self.tokens.by_name(session.name)
        revoked = holder is None or holder.sha256 != session.token_sha256
        if session.expires <= now or revoked or holder is None or holder.role != OFFICER:
            self.store.end_officer_session(session.id_sha256)
            return None
        return holder, session

    def end(self, session_id: str) -> None:
        self.store.end_officer_session(digest(session_id))


def link_url(base: str, code: str) -> str:
    """The link an officer opens: the code in the fragment, which browsers never send to a
    server (nor to a proxy's logs); the page reads it and trades it."""
    return f"{base.rstrip('/')}/officer#signin={code}"


def qr_svg(url: str) -> str:
    """``url`` as a QR code, an SVG document (medium error correction: survives a scuffed
    screen or a print-out)."""
    import io  # noqa: PLC0415

    import segno  # noqa: PLC0415 - only when a link is made

    out = io.BytesIO()
    segno.make(url, error="m").save(
        out, kind="svg", scale=6, border=4, title="Kerbside sign-in link", xmldecl=False
    )
    return out.getvalue().decode("utf-8")

"""Officers' sign-in (signin.py) over a real store (SQLite and PostgreSQL), with ``now`` passed
in: a link works once and until its expiry, a session until its own, and neither outlives the
token it was made for; only officers; what is expired is forgotten."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerbside.collector.signin import SignInRefused, SignIns, digest
from kerbside.collector.store import Store
from kerbside.collector.tokens import TokenHolder, TokenRegistry, hash_token, save_tokens

T0 = 1_800_000_000_000
MIN = 60_000


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    save_tokens(
        path,
        [
            TokenHolder("pc-1", "officer", hash_token("t-pc-1")),
            TokenHolder("an-1", "analyst", hash_token("t-an-1")),
        ],
    )
    return path


@pytest.fixture
def signins(store: Store, tokens: Path) -> SignIns:
    return SignIns(store, TokenRegistry(tokens), session_minutes=60, link_minutes=15)


def test_a_link_opens_one_session_until_it_expires(signins: SignIns) -> None:
    code, expires = signins.make_link("pc-1", T0)
    assert expires == T0 + 15 * MIN
    opened = signins.redeem(code, T0 + 15 * MIN - 1)
    assert opened.session.expires == T0 + 15 * MIN - 1 + 60 * MIN
    with pytest.raises(SignInRefused, match="used or has expired"):
        signins.redeem(code, T0 + MIN)
    late, _ = signins.make_link("pc-1", T0, minutes=1)
    with pytest.raises(SignInRefused, match="used or has expired"):
        signins.redeem(late, T0 + MIN)  # [made, expiry): the expiry itself is too late


def test_a_session_lasts_until_its_expiry(signins: SignIns) -> None:
    opened = signins.open_with_token(TokenHolder("pc-1", "officer", hash_token("t-pc-1")), T0)
    found = signins.holder(opened.session_id, T0 + 60 * MIN - 1)
    assert found is not None
    assert found[0].name == "pc-1"
    assert signins.holder(opened.session_id, T0 + 60 * MIN) is None
    # Expired is gone from the store, not only refused.
    assert signins.store.officer_session(digest(opened.session_id)) is None


def test_a_replaced_token_ends_sessions_and_links(signins: SignIns, tokens: Path) -> None:
    code, _ = signins.make_link("pc-1", T0)
    opened = signins.open_with_token(TokenHolder("pc-1", "officer", hash_token("t-pc-1")), T0)
    save_tokens(tokens, [TokenHolder("pc-1", "officer", hash_token("a new one"))])
    signins.tokens._checked = -1e9  # as if a second had passed
    assert signins.holder(opened.session_id, T0 + 2) is None
    with pytest.raises(SignInRefused, match="revoked"):
        signins.redeem(code, T0 + 3)


def test_only_officers(signins: SignIns) -> None:
    with pytest.raises(SignInRefused, match="not an officer") as refused:
        signins.make_link("an-1", T0)
    assert refused.value.status == 403
    with pytest.raises(SignInRefused, match="no token named") as refused:
        signins.make_link("nobody", T0)
    assert refused.value.status == 404
    with pytest.raises(SignInRefused, match="only an officer's token"):
        signins.open_with_token(TokenHolder("an-1", "analyst", hash_token("t-an-1")), T0)
    admin = TokenHolder("root", "admin", hash_token("t-root"))
    with pytest.raises(SignInRefused):
        signins.open_with_token(admin, T0)


def test_what_expired_is_forgotten(signins: SignIns) -> None:
    store = signins.store
    signins.make_link("pc-1", T0, minutes=1)
    old = signins.open_with_token(TokenHolder("pc-1", "officer", hash_token("t-pc-1")), T0)
    # A later sign-in tidies up what has expired by then.
    signins.make_link("pc-1", T0 + 61 * MIN)
    assert store.officer_session(digest(old.session_id)) is None
    assert store.prune_sign_ins(T0 + 61 * MIN) == 0
    assert store.end_officer_sessions("pc-1") == 1  # the new link, unused

"""A real uvicorn serving the API of a real collector (``harness.Harness``: core, SQLite store,
read side, commands) on a free port, in a thread with its own loop (as in the collector: one loop
owns the store and the core; tests reach them through ``server.call``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from kerbside.collector.api import create_app
from kerbside.collector.api.server import server_config
from kerbside.collector.config import HttpConfig
from kerbside.collector.tokens import TokenHolder, TokenRegistry, hash_token, save_tokens
from tests.collector.api.harness import Harness, site_data
from tests.helpers import free_port

ROLES = ("officer", "analyst", "admin", "provider")
T = TypeVar("T")


def token_of(role: str) -> str:
    return f"test-token-{role}"


class FailingStdout:
    """stdout that keeps what a command tried to write to it and fails the write: ``ENOSPC`` a
    full disk, ``EPIPE`` a reader gone away (whose stdout moves to /dev/null: a real file
    descriptor, ``path``'s)."""

    def __init__(self, path: Path, error: int) -> None:
        self.tried = ""
        self._error = error
        self._file = path.open("wb")

    def write(self, text: str) -> int:
        self.tried += text
        raise OSError(self._error, os.strerror(self._error))  # EPIPE: a BrokenPipeError

    def flush(self) -> None:
        raise OSError(self._error, os.strerror(self._error))

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


def write_tokens(path: Path) -> Path:
    save_tokens(path, [TokenHolder(f"{r}-1", r, hash_token(token_of(r))) for r in ROLES])
    return path


def app_of(
    harness: Harness, tokens: TokenRegistry | Path | None = None, http: HttpConfig | None = None
) -> FastAPI:
    """The API over the harness's collector; the officers' sessions in its store."""
    parts = harness.collector
    api = (parts.queries, parts.commands, parts.feed)
    if isinstance(tokens, TokenRegistry):
        return create_app(*api, signin_store=harness.store, tokens=tokens, http=http)
    return create_app(*api, signin_store=harness.store, tokens_file=tokens, http=http)


_fresh = itertools.count()


@dataclass
class ApiServer:
    url: str
    service: Harness
    loop: asyncio.AbstractEventLoop
    app: FastAPI
    workdir: Path

    def fresh(self, *, sink: bool = False, site: dict[str, Any] | None = None) -> ApiServer:
        """A new collector (with a time-series sink if ``sink``, on ``site`` if given; and
        empty API caches) behind the same running server."""
        harness = Harness(self.workdir / f"fresh-{next(_fresh)}", site, sink=sink)

        def swap() -> None:
            fresh_app = app_of(harness, self.app.state.tokens, self.app.state.http)
            for key in (
                "queries",
                "commands",
                "feed",
                "signins",
                "site_cache",
                "sse_frames",
                "page_cache",
                "opendata",
            ):
                setattr(self.app.state, key, getattr(fresh_app.state, key))

        self.call(swap)
        return ApiServer(self.url, harness, self.loop, self.app, self.workdir)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the server's loop (where the service lives) and return its result."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout=10)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` in the server's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def client(self, role: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token_of(role)}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kw)


def serve(
    harness: Harness, tokens_file: Path, workdir: Path, http: HttpConfig | None = None
) -> Iterator[ApiServer]:
    """``create_app`` over ``harness`` served as the collector serves it (api/server.py), on a
    free port."""
    http = (http or HttpConfig()).model_copy(update={"port": free_port()})
    app = app_of(harness, tokens_file, http)
    port = http.port
    config = server_config(app, http, lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.02)
    try:
        yield ApiServer(f"http://127.0.0.1:{port}", harness, loop, app, workdir)
    finally:
        server.should_exit = True
        server.force_exit = True  # open SSE streams would hold a graceful stop
        thread.join(timeout=10)
        loop.close()
        harness.store.close()


@contextmanager
def serving(tokens_file: Path, http: HttpConfig | None = None) -> Iterator[ApiServer]:
    """A server of a test's own (a new collector whose store, ``signins.db``, sits beside the
    tokens file, as a collector config with ``store: {path: signins.db}`` says)."""
    workdir = tokens_file.parent
    harness = Harness(workdir / "collector", store_path=workdir / "signins.db")
    yield from serve(harness, tokens_file, workdir, http)


@pytest.fixture(scope="module")
def _module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    workdir = tmp_path_factory.mktemp("api")
    tokens = write_tokens(workdir / "tokens.yaml")
    yield from serve(Harness(workdir / "first"), tokens, workdir)


@pytest.fixture
def api(_module_server: ApiServer) -> ApiServer:
    """A fresh service for each test, behind one server per module (starting one costs)."""
    return _module_server.fresh()


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One server for tests that only read, or write things no other test looks at."""
    workdir = tmp_path_factory.mktemp("shared-api")
    tokens = write_tokens(workdir / "tokens.yaml")
    site = site_data(named=("CA-F-PKW-001", "CA-F-PKW-002"))  # the bays the /docs examples use
    yield from serve(Harness(workdir / "collector", site), tokens, workdir)

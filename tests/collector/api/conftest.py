"""A real uvicorn serving create_app(FakeService) on a free port, in a thread with its own loop
(as in the collector: one loop owns the service; tests reach it through ``server.call``)."""

from __future__ import annotations

import asyncio
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
from kerbside.collector.store import Store
from kerbside.collector.tokens import TokenHolder, hash_token, save_tokens
from tests.collector.api.fakes import FakeService, make_site
from tests.helpers import free_port

ROLES = ("officer", "analyst", "admin", "provider")
T = TypeVar("T")


def token_of(role: str) -> str:
    return f"test-token-{role}"


def write_tokens(path: Path) -> Path:
    save_tokens(path, [TokenHolder(f"{r}-1", r, hash_token(token_of(r))) for r in ROLES])
    return path


@dataclass
class ApiServer:
    url: str
    service: FakeService
    loop: asyncio.AbstractEventLoop
    app: FastAPI

    def fresh(self) -> ApiServer:
        """A new FakeService (and empty API caches) behind the same running server."""
        service = FakeService()

        def swap() -> None:
            fresh_app = create_app(
                service, tokens=self.app.state.tokens, signin_store=self.app.state.signins.store
            )
            for key in ("service", "site_cache", "sse_frames", "page_cache"):
                setattr(self.app.state, key, getattr(fresh_app.state, key))

        self.call(swap)
        return ApiServer(self.url, service, self.loop, self.app)

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
    service: FakeService, tokens_file: Path, http: HttpConfig | None = None
) -> Iterator[ApiServer]:
    """``create_app`` served as the collector serves it (api/server.py), on a free port; the
    officers' sessions in a SQLite store beside the tokens file."""
    store = Store(tokens_file.parent / "signins.db")
    http = (http or HttpConfig()).model_copy(update={"port": free_port()})
    app = create_app(service, tokens_file=tokens_file, signin_store=store, http=http)
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
        yield ApiServer(f"http://127.0.0.1:{port}", service, loop, app)
    finally:
        server.should_exit = True
        server.force_exit = True  # open SSE streams would hold a graceful stop
        thread.join(timeout=10)
        loop.close()
        store.close()


@contextmanager
def serving(
    service: FakeService, tokens_file: Path, http: HttpConfig | None = None
) -> Iterator[ApiServer]:
    """``serve`` as a ``with`` block, for a test that needs a server of its own."""
    yield from serve(service, tokens_file, http)


@pytest.fixture(scope="module")
def _module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    yield from serve(FakeService(), write_tokens(tmp_path_factory.mktemp("t") / "tokens.yaml"))


@pytest.fixture
def api(_module_server: ApiServer) -> ApiServer:
    """A fresh service for each test, behind one server per module (starting one costs)."""
    return _module_server.fresh()


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One server for tests that only read, or write things no other test looks at."""
    tokens = write_tokens(tmp_path_factory.mktemp("tokens") / "tokens.yaml")
    site = make_site(named=("CA-F-PKW-001", "CA-F-PKW-002"))  # the bays the /docs examples use
    yield from serve(FakeService(site=site), tokens)

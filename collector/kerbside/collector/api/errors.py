"""Error responses: every 4xx is JSON, and a bad input names its field (``field: "body.end"``)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kerbside.collector.api.ports import NotFoundError, RecordRejectedError


class FieldError(Exception):
    """Raised by routes for input that parsed but cannot be used (unknown bay, bad cursor)."""

    def __init__(
        self,
        loc: Sequence[str | int],
        msg: str,
        status_code: int = status.HTTP_422_UNPROCESSABLE_CONTENT,
    ) -> None:
        super().__init__(msg)
        self.loc = list(loc)
        self.msg = msg
        self.status_code = status_code


def dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def field_error_body(loc: Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"field": dotted(loc), "detail": [{"loc": list(loc), "msg": msg, "type": kind}]}


def _service_error_types() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """The service's NotFound and RecordRejected, plus our fallbacks for tests and stubs."""
    not_found: list[type[Exception]] = [NotFoundError]
    rejected: list[type[Exception]] = [RecordRejectedError]
    try:
        service = importlib.import_module("kerbside.collector.service")
    except Exception:  # noqa: BLE001 - a broken or absent service module: fallbacks only
        logging.getLogger(__name__).warning("cannot import kerbside.collector.service")
        return tuple(not_found), tuple(rejected)
    for name, bucket in (("NotFound", not_found), ("RecordRejected", rejected)):
        found = getattr(service, name, None)
        if isinstance(found, type) and issubclass(found, Exception):
            bucket.append(found)
    return tuple(not_found), tuple(rejected)


def install(app: FastAPI) -> None:
    not_found, rejected = _service_error_types()

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        items = [
            {
                "loc": list(err.get("loc", ())),
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        field = dotted(items[0]["loc"]) if items else None
        return JSONResponse(
            {"field": field, "detail": items}, status.HTTP_422_UNPROCESSABLE_CONTENT
        )

    async def on_field(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FieldError)
        return JSONResponse(field_error_body(exc.loc, exc.msg, "invalid"), exc.status_code)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        # 400 is what the framework answers for a body that is not JSON (or not UTF-8).
        field = "body" if exc.status_code == status.HTTP_400_BAD_REQUEST else None
        return JSONResponse(
            {"field": field, "detail": exc.detail}, exc.status_code, headers=exc.headers
        )

    async def on_not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"field": None, "detail": str(exc) or "not found"}, status.HTTP_404_NOT_FOUND
        )

    async def on_rejected(request: Request, exc: Exception) -> JSONResponse:
        reason = str(getattr(exc, "reason", None) or exc)
        field = getattr(exc, "field", None) or "body"
        code = status.HTTP_422_UNPROCESSABLE_CONTENT
        if field == "alert_id":  # acting on an alert that is closed already
            code = status.HTTP_409_CONFLICT
        loc = [field] if field in ("alert_id", "body") else ["body", field]
        return JSONResponse(field_error_body(loc, reason, "rejected"), code)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(FieldError, on_field)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for cls in not_found:
        app.add_exception_handler(cls, on_not_found)
    for cls in rejected:
        app.add_exception_handler(cls, on_rejected)

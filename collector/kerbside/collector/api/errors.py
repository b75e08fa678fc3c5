"""Error responses: every 4xx is JSON, and a bad input names its field (``field: "body.end"``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kerbside.collector.errors import (
    AlertClosed,
    NotFound,
    NotOwner,
    RecordRejected,
    StoreError,
)


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


def install(app: FastAPI) -> None:
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
        assert isinstance(exc, RecordRejected)
        loc = ["body", exc.field] if exc.field else ["body"]
        return JSONResponse(
            field_error_body(loc, exc.detail, "rejected"), status.HTTP_422_UNPROCESSABLE_CONTENT
        )

    async def on_not_owner(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            field_error_body(["path", "right_id"], str(exc), "forbidden"),
            status.HTTP_403_FORBIDDEN,
        )

    async def on_closed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            field_error_body(["alert_id"], str(exc), "rejected"), status.HTTP_409_CONFLICT
        )

    async def on_store(request: Request, exc: Exception) -> JSONResponse:
        # nothing was written (the unit of work is all or nothing): the client may try again
        return JSONResponse(
            {"field": None, "detail": "the store cannot take writes just now; try again"},
            status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        # a fault of ours, not of the request: JSON like every other answer (the traceback goes
        # to the log, at most once a minute for a recurring one)
        return JSONResponse(
            {"field": None, "detail": "internal error; it has been logged"},
            status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    app.add_exception_handler(Exception, on_bug)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(FieldError, on_field)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(NotFound, on_not_found)
    app.add_exception_handler(RecordRejected, on_rejected)
    app.add_exception_handler(NotOwner, on_not_owner)
    app.add_exception_handler(AlertClosed, on_closed)
    app.add_exception_handler(StoreError, on_store)

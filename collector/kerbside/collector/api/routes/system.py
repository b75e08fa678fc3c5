"""Health, metrics, and the token-for-cookie trade of the officers' page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse

from kerbside.collector.api import metrics as prometheus
from kerbside.collector.api.deps import COOKIE_NAME, CurrentUser, ServiceDep

router = APIRouter(tags=["system"])
_PARTS = ("broker", "store", "sink")
COOKIE_MAX_AGE_S = 14 * 86_400


def _part_state(value: Any) -> str:
    if value is True or value in ("ok", "up", "connected"):
        return "ok"
    if value is None or value in ("disabled", "none", "not configured"):
        return "disabled"
    return "down"


@router.get("/healthz", summary="Broker, store and sink state; 503 when one is down")
async def healthz(service: ServiceDep) -> JSONResponse:
    try:
        report: dict[str, Any] = dict(service.healthz())
    except Exception as exc:  # noqa: BLE001 - a health check must answer, whatever broke
        report = {"store": "down", "error": str(exc)}
    if "broker" not in report and "mqtt_connected" in report:
        report["broker"] = report["mqtt_connected"]
    parts = {part: _part_state(report.get(part, "disabled")) for part in _PARTS}
    down = [part for part, state in parts.items() if state == "down"]
    body = {**report, **parts, "status": "down" if down else "ok"}
    code = status.HTTP_503_SERVICE_UNAVAILABLE if down else status.HTTP_200_OK
    return JSONResponse(body, code, headers={"Cache-Control": "no-store"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request, service: ServiceDep) -> PlainTextResponse:
    extra = {"kerbside_api_sse_clients": float(request.app.state.sse_clients)}
    return PlainTextResponse(
        prometheus.render(service.metrics(), extra),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


@router.post(
    "/api/v1/session",
    summary="Trade a bearer token for an HttpOnly cookie (for EventSource)",
    tags=["officer page"],
)
async def open_session(request: Request, holder: CurrentUser, response: Response) -> dict[str, str]:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    if token:
        response.set_cookie(
            COOKIE_NAME,
            token,
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
    return {"name": holder.name, "role": holder.role}


@router.get("/api/v1/session", summary="Who the token or cookie belongs to", tags=["officer page"])
async def whoami(holder: CurrentUser) -> dict[str, str]:
    return {"name": holder.name, "role": holder.role}


@router.delete("/api/v1/session", summary="Forget the cookie", tags=["officer page"])
async def close_session(response: Response) -> dict[str, bool]:
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return {"signed_out": True}

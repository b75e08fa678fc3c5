"""Health and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, Response

from kerbside.collector.api.deps import QueriesDep
from kerbside.collector.api.metrics import exposition

router = APIRouter(tags=["system"])
_PARTS = ("broker", "store", "sink")


def _part_state(value: Any) -> str:
    if value is True or value in ("ok", "up", "connected"):
        return "ok"
    if value is None or value in ("disabled", "none", "not configured"):
        return "disabled"
    if value == "failing":  # the store refuses commits (disk full): nothing is acknowledged
        return "failing"
    return "down"


@router.get("/healthz", summary="Broker, store and sink state; 503 when one is down or failing")
async def healthz(queries: QueriesDep) -> JSONResponse:
    try:
        report: dict[str, Any] = dict(queries.healthz())
    except Exception as exc:  # noqa: BLE001 - a health check must answer, whatever broke
        report = {"store": "down", "error": str(exc)}
    if "broker" not in report and "mqtt_connected" in report:
        report["broker"] = report["mqtt_connected"]
    parts = {part: _part_state(report.get(part, "disabled")) for part in _PARTS}
    down = [part for part, state in parts.items() if state in ("down", "failing")]
    body = {**report, **parts, "status": "down" if down else "ok"}
    code = status.HTTP_503_SERVICE_UNAVAILABLE if down else status.HTTP_200_OK
    return JSONResponse(body, code, headers={"Cache-Control": "no-store"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    body, content_type = exposition(
        request.app.state.metrics_registry, request.headers.get("accept")
    )
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

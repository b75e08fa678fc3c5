"""Payments and permits from providers; suspensions from the council (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from kerbside.collector.api.deps import Admin, CommandsDep, Provider, SiteDep
from kerbside.collector.api.errors import FieldError
from kerbside.collector.api.models import Accepted, ErrorBody, RightBody, SuspensionBody
from kerbside.collector.api.routes.common import JsonText

router = APIRouter(prefix="/api/v1", tags=["rights and suspensions"])
RightId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "bad body; `field` names the field"}
}


@router.post(
    "/rights",
    response_model=Accepted,
    status_code=status.HTTP_201_CREATED,
    summary="Post a payment or permit (same right_id replaces it)",
    responses=_ERRORS,
)
async def post_right(
    body: RightBody, commands: CommandsDep, site: SiteDep, _: Provider
) -> JsonText:
    if body.bay_id is not None and body.bay_id not in site.bay_zone:
        raise FieldError(["body", "bay_id"], f"unknown bay {body.bay_id}")
    if body.zone_id is not None and body.zone_id not in site.zones:
        raise FieldError(["body", "zone_id"], f"unknown zone {body.zone_id}")
    result = await commands.post_right(body.journal())
    return JsonText(result or body.journal(), status_code=status.HTTP_201_CREATED)


@router.delete(
    "/rights/{right_id}",
    response_model=Accepted,
    summary="Cancel a right",
    responses={404: {"model": ErrorBody, "description": "no such right"}},
)
async def delete_right(right_id: RightId, commands: CommandsDep, _: Provider) -> JsonText:
    result = await commands.delete_right(right_id)
    return JsonText(result or {"right_id": right_id, "cancelled": True})


@router.post(
    "/suspensions",
    response_model=Accepted,
    status_code=status.HTTP_201_CREATED,
    summary="Suspend bays over [start, end)",
    responses=_ERRORS,
)
async def post_suspension(
    body: SuspensionBody, commands: CommandsDep, site: SiteDep, _: Admin
) -> JsonText:
    for index, bay_id in enumerate(body.bay_ids):
        if bay_id not in site.bay_zone:
            raise FieldError(["body", "bay_ids", index], f"unknown bay {bay_id}")
    result = await commands.post_suspension(body.journal())
    return JsonText(result or body.journal(), status_code=status.HTTP_201_CREATED)

"""Payments and permits from providers; suspensions from the council (admin).

A right belongs to the provider token that created it: only that token (or an admin) may replace
or cancel it.
"""

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
_RIGHT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    403: {"model": ErrorBody, "description": "a right of that id belongs to another provider"},
}


@router.post(
    "/rights",
    response_model=Accepted,
    status_code=status.HTTP_201_CREATED,
    summary="Post a payment or permit (same right_id replaces it, if it is this provider's)",
    responses=_RIGHT_ERRORS,
)
async def post_right(
    body: RightBody, commands: CommandsDep, site: SiteDep, caller: Provider
) -> JsonText:
    if body.bay_id is not None and body.bay_id not in site.bay_zone:
        raise FieldError(["body", "bay_id"], f"unknown bay {body.bay_id}")
    if body.zone_id is not None and body.zone_id not in site.zones:
        raise FieldError(["body", "zone_id"], f"unknown zone {body.zone_id}")
    result = await commands.post_right(
        body.journal(), caller.name, any_owner=caller.role == "admin"
    )
    return JsonText(result or body.journal(), status_code=status.HTTP_201_CREATED)


@router.delete(
    "/rights/{right_id}",
    response_model=Accepted,
    summary="Cancel a right (only its own provider's token may)",
    responses={
        403: {"model": ErrorBody, "description": "another provider's right"},
        404: {"model": ErrorBody, "description": "no such right"},
    },
)
async def delete_right(right_id: RightId, commands: CommandsDep, caller: Provider) -> JsonText:
    result = await commands.delete_right(right_id, caller.name, any_owner=caller.role == "admin")
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

"""Recover: a webhook's dead or expired messages since a time sent again — all of
them, or only one vehicle's, one vehicle group's or one driver's. The portal's
Recover and the API's recover both call `recover_replay`; the outbox reopens the
messages (outbox/recovery.py), keeping their webhook-ids."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.errors import ValidationError
from core.extensions import db
from core.times import parse_rfc3339
from fleet.models import Driver, Vehicle
from outbox.recovery import recover_since
from webhooks.models import Webhook
from webhooks.schemas import SINCE_FORMAT

SCOPES = ("vehicle_id", "vehicle_group", "driver_id")
ONE_SCOPE = "Choose one vehicle, one vehicle group or one driver, not several."


@dataclass(frozen=True)
class Replay:
    """A recovery: since when, and which messages (None: every one)."""

    since: datetime
    lanes: list[str] | None = None  # the vehicles' lanes ("vehicle:<id>")
    driver_id: int | None = None


def _lane(vehicle_id: int) -> str:
    return f"vehicle:{vehicle_id}"  # events.catalogue.DetectedEvent.ordering_key


def asked_replay(account_id: int, values: Mapping[str, Any]) -> Replay:
    """The recovery `values` ask for (`since`, and at most one of vehicle_id,
    vehicle_group, driver_id, checked against webhooks/schemas.Recover), with the
    account's own vehicles, group and drivers; a ValidationError names what is wrong."""
    since = parse_rfc3339(values.get("since"))
    if since is None:
        raise ValidationError({"since": [SINCE_FORMAT]})
    given = [name for name in SCOPES if values.get(name) is not None]
    if len(given) > 1:
        raise ValidationError({name: [ONE_SCOPE] for name in given})
    if "vehicle_id" in given:
        vehicle = db.session.get(Vehicle, values["vehicle_id"])
        if vehicle is None or vehicle.account_id != account_id:
            raise ValidationError({"vehicle_id": ["No such vehicle in this account."]})
        return Replay(since, lanes=[_lane(vehicle.id)])
    if "vehicle_group" in given:
        ids = db.session.scalars(
            select(Vehicle.id).where(
                Vehicle.account_id == account_id, Vehicle.group_name == values["vehicle_group"]
            )
        ).all()
        if not ids:
            raise ValidationError({"vehicle_group": ["No vehicle of this account is in it."]})
        return Replay(since, lanes=[_lane(vehicle_id) for vehicle_id in ids])
    if "driver_id" in given:
        driver = db.session.get(Driver, values["driver_id"])
        if driver is None or driver.account_id != account_id:
            raise ValidationError({"driver_id": ["No such driver in this account."]})
        return Replay(since, driver_id=driver.id)
    return Replay(since)


def recover_replay(webhook: Webhook, replay: Replay) -> int:
    """Queue the webhook's dead or expired messages the replay names again; how
    many. The caller commits."""
    return recover_since(webhook, replay.since, lanes=replay.lanes, driver_id=replay.driver_id)

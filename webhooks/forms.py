"""Portal forms of the webhooks blueprint. Fields arrive as text; `values()` turns
them into the mapping `lifecycle.clean_fields` checks, the same the API sends."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    EmailField,
    HiddenField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired

from core.portal import number_or_text
from events.catalogue import EventType, SpeedingEvents
from events.redaction import MAX_DECIMALS, PATH_PATTERN, Redaction, paths_of
from fleet.models import Landmark
from fleet.records import account_drivers, vehicle_groups, vehicles_with_drivers
from outbox.models import DEFAULT_MAX_IN_FLIGHT, MAX_IN_FLIGHT_RANGE, Ordering
from webhooks.schemas import LATEST_WINS_EVENT_TYPES, SKIP_LATE_EVENT_TYPES
from webhooks.tracks import (
    DEFAULT_TRACK,
    TRACK_EVENT_TYPES,
    TRACK_POINTS_RANGE,
    TRACK_SECONDS_RANGE,
)
from webhooks.wire import ContentType

# Each ordering with what it costs.
ORDERING_CHOICES = {
    Ordering.VEHICLE: "Per vehicle (default): each vehicle's events in order, many vehicles "
    "at once.",
    Ordering.WEBHOOK: "Whole webhook: one request at a time, at most one message per round "
    "trip of your receiver.",
    Ordering.NONE: "None: a failed message holds nothing back, but a vehicle's events may "
    "arrive out of order.",
}


class WebhookForm(FlaskForm):
    event_type = HiddenField()
    url = StringField("URL", description="Where we POST each event: https://…")
    name = StringField("Name", description="How you will recognise it in the grid.")
    content_type = RadioField(
        "Content Type",
        choices=[
            SelectChoice(ContentType.JSON.value, "json — application/json"),
            SelectChoice(ContentType.FORM.value, "form — application/x-www-form-urlencoded"),
        ],
        default=ContentType.JSON.value,
    )
    threshold_mph = StringField("Threshold (mph)")
    speeding_events = RadioField(
        "Send",
        choices=[
            SelectChoice(
                SpeedingEvents.EVERY_REPORT.value,
                "an event for every report at or over the threshold",
            ),
            SelectChoice(
                SpeedingEvents.EPISODE_START.value,
                "once per speeding episode: when a vehicle first reaches the "
                "threshold, the next only after it has dropped below",
            ),
        ],
        default=SpeedingEvents.EVERY_REPORT.value,
    )
    idle_minutes = StringField("Idle for (minutes)")
    vehicle_group = SelectField(
        "Vehicles",
        description="Limit the webhook to one group of vehicles (the vehicles' Group).",
        choices=[SelectChoice("", "All vehicles")],
        validate_choice=False,  # the rules in lifecycle.clean_fields decide
    )
    area = SelectField(
        "Area",
        description="Only events whose position is inside it (edges included).",
        choices=[SelectChoice("", "Everywhere")],
        validate_choice=False,  # lifecycle.clean_fields decides
    )
    area_circle = StringField(
        "Circle: latitude, longitude, radius (metres)",
        description='For "within a distance of a point", e.g. 41.8800, -87.6300, 500.',
    )
    area_polygon = TextAreaField(
        "Polygon (GeoJSON)",
        description='For "inside a polygon": {"type": "Polygon", "coordinates": [[[longitude, '
        "latitude], …]]}, the first position repeated last.",
    )
    track = BooleanField(
        "Send positions as tracks",
        description="One POST per vehicle per window: a GeoJSON Feature with a LineString "
        "of its positions and each one's time, speed and heading (JSON only).",
    )
    track_points = StringField(
        "Positions per window ({}–{})".format(*TRACK_POINTS_RANGE),
        default=str(DEFAULT_TRACK["points"]),
    )
    track_seconds = StringField(
        "… or seconds per window ({}–{}), whichever comes first".format(*TRACK_SECONDS_RANGE),
        default=str(DEFAULT_TRACK["seconds"]),
    )
    track_min_distance_m = StringField(
        "Leave out positions closer than (metres)",
        default=str(DEFAULT_TRACK["min_distance_m"]),
        description="To the last one kept in the window; 0 keeps every position.",
    )
    drop_driver_name = BooleanField(
        "Leave out drivers' names",
        description="Drivers keep only their id; a DVIR's driver is left out.",
    )
    coordinate_decimals = StringField(
        "Round coordinates to (decimals, optional)",
        description="3: about 110 m; 2: about 1.1 km. Empty: as the device reported them.",
        render_kw={"type": "number", "inputmode": "numeric", "min": 0, "max": MAX_DECIMALS},
    )
    drop_fields = StringField(
        "Leave out fields (optional)",
        description="Their paths in the body, separated by commas: data.odometer_mi, "
        "data.trip.start. The example shows what is left.",
    )
    contact_email = EmailField(
        "Contact email (optional)", description="Who we tell when this endpoint keeps failing."
    )
    custom_header_name = StringField(
        "Custom header name (optional)",
        description="Sent with every POST, for receivers that check a static credential.",
    )
    custom_header_value = StringField("Custom header value", description="Stored encrypted.")
    remove_custom_header = BooleanField("Remove the custom header")
    ordering = RadioField(
        "Ordering",
        choices=[SelectChoice(o.value, words) for o, words in ORDERING_CHOICES.items()],
        default=Ordering.VEHICLE.value,
    )
    max_in_flight = StringField(
        "Requests at once ({}–{})".format(*MAX_IN_FLIGHT_RANGE),
        default=str(DEFAULT_MAX_IN_FLIGHT),
        description="More means more requests at once to your receiver.",
    )
    rate_limit = StringField(
        "Rate limit (messages per second, optional)",
        description="Messages wait rather than exceed it; leave it empty for no limit.",
    )
    pull_only = BooleanField(
        "Pull only: push nothing, keep every message for the feed",
        description="Your system reads GET /api/v1/webhooks/{id}/feed instead of receiving "
        "POSTs (a receiver behind a firewall).",
    )
    ttl_minutes = StringField(
        "Time to live (minutes, optional)",
        description="A message not delivered within it ends stale instead of being tried "
        "again. Empty: the event type's (positions 15 minutes, speeding 2 hours, the others "
        "72 hours).",
    )
    skip_late = BooleanField(
        "Skip late positions",
        description="Positions received long after their fix (stored in a dead zone, sent "
        "when the signal came back) are not sent.",
    )
    latest_wins = BooleanField(
        "Send only the newest position when a backlog forms",
        description="Older positions of a vehicle are dropped (superseded) when a backlog forms.",
    )

    def values(self, event_type: EventType, editing: bool, has_header: bool) -> dict[str, Any]:
        """The fields as `clean_fields` takes them. Editing, a blank header value
        keeps the stored one."""
        values: dict[str, Any] = {
            "name": self.name.data or "",
            "url": self.url.data or "",
            "content_type": self.content_type.data,
            "contact_email": self.contact_email.data or None,
            "vehicle_group": self.vehicle_group.data or None,
        }
        if not editing:
            values["event_type"] = event_type.key
        values["area"] = self._area()
        # As latest wins: offered to location webhooks only; a tick elsewhere is refused.
        if event_type.key in TRACK_EVENT_TYPES or self.track.data:
            values["track"] = self._track()
        values.update(self._redaction())
        if event_type.setting is not None:
            setting_field = getattr(self, event_type.setting.field)
            values[event_type.setting.field] = number_or_text(setting_field.data)
        header_name = (self.custom_header_name.data or "").strip()
        header_value = self.custom_header_value.data or ""
        if editing and self.remove_custom_header.data:
            values["custom_header"] = None
        elif header_name and (header_value or not (editing and has_header)):
            values["custom_header"] = {"name": header_name, "value": header_value}
        elif header_value and not header_name:
            values["custom_header"] = {"name": "", "value": header_value}
        # A delivery setting left out of the post (a dialog opened before they
        # existed) keeps its stored value, or its default.
        if self.ordering.raw_data:
            values["ordering"] = self.ordering.data
        if self.max_in_flight.raw_data:
            values["max_in_flight"] = number_or_text(self.max_in_flight.data)
        if self.rate_limit.raw_data:
            values["rate_limit"] = number_or_text(self.rate_limit.data, float)
        # An unticked box is not posted at all. Other types never show it: only a
        # tick is sent for them, for the rules to refuse.
        if event_type.key in LATEST_WINS_EVENT_TYPES or self.latest_wins.data:
            values["latest_wins"] = bool(self.latest_wins.data)
        values["pull_only"] = bool(self.pull_only.data)
        if self.ttl_minutes.raw_data:
            values["ttl_minutes"] = number_or_text(self.ttl_minutes.data)
        # As latest wins: offered to location webhooks only; a tick elsewhere is refused.
        if event_type.key in SKIP_LATE_EVENT_TYPES or self.skip_late.data:
            values["skip_late"] = bool(self.skip_late.data)
        if self.speeding_events.raw_data:
            values["speeding_events"] = self.speeding_events.data
        return values

    def _track(self) -> dict[str, Any] | None:
        if not self.track.data:
            return None
        fields = (self.track_points, self.track_seconds, self.track_min_distance_m)
        return {
            name: number_or_text(field.data)
            for name, field in zip(("points", "seconds", "min_distance_m"), fields, strict=True)
            if (field.data or "").strip()
        }

    def _redaction(self) -> dict[str, Any]:
        """The redaction fields as the rules take them."""
        return {
            "drop_driver_name": bool(self.drop_driver_name.data),
            "coordinate_decimals": number_or_text(self.coordinate_decimals.data),
            "drop_fields": paths_of(self.drop_fields.data or ""),
        }

    def _area(self) -> dict[str, Any] | None:
        """The chosen area as the API takes it; unreadable text is passed on as it
        is, for the rules to refuse in their own words."""
        chosen = self.area.data or ""
        if chosen.startswith(LANDMARK_CHOICE):
            return {"landmark_id": number_or_text(chosen.removeprefix(LANDMARK_CHOICE))}
        if chosen == "circle":
            parts = [part.strip() for part in (self.area_circle.data or "").split(",")]
            if len(parts) != len(CIRCLE_KEYS):
                return {"circle": self.area_circle.data or ""}
            return {
                "circle": {
                    k: number_or_text(v, float) for k, v in zip(CIRCLE_KEYS, parts, strict=True)
                }
            }
        if chosen == "polygon":
            text = self.area_polygon.data or ""
            try:
                return {"polygon": json.loads(text)}
            except ValueError:
                return {"polygon": text}
        return None

    def offer_areas(self, landmarks: list[Landmark], webhook: Any = None) -> None:
        """The area choices: everywhere, each of the account's landmarks, a circle
        or a polygon; editing, the webhook's own area filled in."""
        self.area.choices = [
            SelectChoice("", "Everywhere"),
            *(SelectChoice(f"{LANDMARK_CHOICE}{m.id}", f"Inside {m.name}") for m in landmarks),
            SelectChoice("circle", "Within a distance of a point"),
            SelectChoice("polygon", "Inside a polygon"),
        ]
        if webhook is None or self.area.raw_data:
            return
        if webhook.area_landmark_id is not None:
            self.area.data = f"{LANDMARK_CHOICE}{webhook.area_landmark_id}"
        elif webhook.area and "circle" in webhook.area:
            circle = webhook.area["circle"]
            self.area.data = "circle"
            self.area_circle.data = ", ".join(str(circle[key]) for key in CIRCLE_KEYS)
        elif webhook.area:
            self.area.data = "polygon"
            self.area_polygon.data = json.dumps(webhook.area["polygon"])
        else:
            self.area.data = ""


def example_redaction(values: Mapping[str, Any]) -> Redaction:
    """The redaction the dialog's example shows for the fields as typed so far:
    what is valid of them (saving names what is not)."""
    decimals = number_or_text(values.get("coordinate_decimals"))
    return Redaction(
        values.get("drop_driver_name") in (True, "y"),
        decimals if isinstance(decimals, int) and 0 <= decimals <= MAX_DECIMALS else None,
        tuple(p for p in paths_of(values.get("drop_fields")) if re.fullmatch(PATH_PATTERN, p)),
    )


LANDMARK_CHOICE = "landmark:"
CIRCLE_KEYS = ("latitude", "longitude", "radius_m")


class RecoverForm(FlaskForm):
    since = DateTimeLocalField(
        "Recover dead and expired messages since (UTC)",
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired()],
    )
    of = SelectField(
        "Of",
        choices=[SelectChoice("", "every vehicle")],
        validate_choice=False,  # webhooks/replay.py checks the account's own
    )

    def offer(self, account_id: int) -> RecoverForm:
        """The vehicles, groups and drivers a recovery may be limited to."""
        self.of.choices = {
            "All": [("", "every vehicle")],
            "Vehicle": [
                (f"vehicle_id:{v.id}", v.name) for v, _ in vehicles_with_drivers(account_id)
            ],
            "Vehicle group": [(f"vehicle_group:{g}", g) for g in vehicle_groups(account_id)],
            "Driver": [(f"driver_id:{d.id}", d.name) for d in account_drivers(account_id)],
        }
        return self

    def values(self) -> dict[str, Any]:
        """As webhooks/replay.asked_replay takes them."""
        values: dict[str, Any] = {"since": self.since.data.replace(tzinfo=UTC).isoformat()}
        name, _, value = (self.of.data or "").partition(":")
        if name in ("vehicle_id", "driver_id"):
            values[name] = int(value) if value.isdigit() else -1
        elif name == "vehicle_group":
            values[name] = value
        return values

"""Portal forms of the fleet blueprint. Fields arrive as text; `values()` turns
them into the mapping the functions of `fleet.records` check against the shapes of
fleet/schemas.py, the same the API sends, and `show_errors` puts their errors back
on the fields."""

from __future__ import annotations

import json
from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import RadioField, SelectChoice, SelectField, StringField, TextAreaField

from core.errors import ValidationError
from core.portal import number_or_text, show_errors
from fleet.models import Driver

POLYGON_EXAMPLE = (
    '{"type": "Polygon", "coordinates": [[[-87.64, 41.87], [-87.62, 41.87], '
    "[-87.62, 41.89], [-87.64, 41.87]]]}"
)


class VehicleForm(FlaskForm):
    name = StringField("Name", description="How the vehicle is known, e.g. “Truck 42”.")
    vin = StringField(
        "VIN",
        description="The 17-character Vehicle Identification Number (no I, O or Q). "
        "It cannot be changed after the vehicle is added.",
    )
    plate = StringField("Plate (optional)")
    group = StringField(
        "Group (optional)", description="Webhooks can be limited to the vehicles of one group."
    )

    def values(self) -> dict[str, Any]:
        return {
            "name": self.name.data or "",
            "vin": self.vin.data or "",
            "plate": self.plate.data or "",
            "group": self.group.data or "",
        }


class VehicleEditForm(FlaskForm):
    """Editing a vehicle: everything but its VIN, plus the driver assigned to it."""

    name = StringField("Name", description="How the vehicle is known, e.g. “Truck 42”.")
    plate = StringField("Plate (optional)")
    group = StringField(
        "Group (optional)", description="Webhooks can be limited to the vehicles of one group."
    )
    driver_id = SelectField(
        "Driver",
        description="Changing the driver sends a Driver Assignment event.",
        validate_choice=False,
    )

    def offer_drivers(self, drivers: list[Driver]) -> None:
        self.driver_id.choices = [
            SelectChoice("", "No driver"),
            *(SelectChoice(str(driver.id), driver.name) for driver in drivers),
        ]

    def values(self) -> dict[str, Any]:
        return {
            "name": self.name.data or "",
            "plate": self.plate.data or "",
            "group": self.group.data or "",
            "driver_id": number_or_text(self.driver_id.data),
        }


class VehicleImportForm(FlaskForm):
    file = FileField(
        "CSV file",
        description="The first line is the header name,vin,plate,group (plate and group "
        "may be left out); then one vehicle per line. UTF-8, at most 5,000 vehicles and "
        "1 MiB. If any line is wrong, nothing is imported.",
        render_kw={"accept": ".csv,text/csv"},
    )


class DriverForm(FlaskForm):
    name = StringField("Name", description="Unique in the account: reports name drivers by it.")
    external_id = StringField(
        "External ID (optional)",
        description="Your own reference: employee number, technician id… At most 60 characters.",
    )

    def values(self) -> dict[str, Any]:
        return {"name": self.name.data or "", "external_id": self.external_id.data or ""}


class LandmarkForm(FlaskForm):
    # Why the polygon's text was not GeoJSON, once `values()` has read it.
    _json_problem: str | None = None

    name = StringField("Name", description="E.g. “North yard”.")
    kind = RadioField(
        "Shape",
        choices=[
            SelectChoice("circle", "Circle — a centre and a radius"),
            SelectChoice("polygon", "Polygon — GeoJSON"),
        ],
        default="circle",
        validate_choice=False,
    )
    latitude = StringField("Latitude", description="Of the centre, in degrees: −90 to 90.")
    longitude = StringField("Longitude", description="Of the centre, in degrees: −180 to 180.")
    radius_m = StringField("Radius (metres)", description="From 1 to 100,000 m.")
    polygon = TextAreaField(
        "GeoJSON polygon",
        description="[longitude, latitude] positions (an altitude third is dropped); the "
        "first ring is the outline, any further rings are holes; each ring ends where it "
        "starts. For example: " + POLYGON_EXAMPLE,
        render_kw={"rows": 6, "spellcheck": "false"},
    )

    def values(self) -> dict[str, Any]:
        """The landmark as the API takes it: a circle or a polygon, by the radio.
        Both are named, the other one null, so that a change replaces the shape and
        a choice of neither is refused, on an edit as on an add."""
        values: dict[str, Any] = {"name": self.name.data or "", "circle": None, "polygon": None}
        self._json_problem = None
        if self.kind.data == "circle":
            values["circle"] = {
                "latitude": number_or_text(self.latitude.data, int, float),
                "longitude": number_or_text(self.longitude.data, int, float),
                "radius_m": number_or_text(self.radius_m.data, int, float),
            }
        elif self.kind.data == "polygon":
            text = (self.polygon.data or "").strip()
            try:
                values["polygon"] = json.loads(text)
            except ValueError as error:
                values["polygon"] = text  # refused by the rules, whatever the text
                self._json_problem = (
                    f"Not valid JSON: {error}." if text else "Paste the polygon as GeoJSON."
                )
        return values

    def fill(self, shape: dict[str, Any]) -> None:
        """Show a stored shape in the fields."""
        if "circle" in shape:
            self.kind.data = "circle"
            for field in ("latitude", "longitude", "radius_m"):
                getattr(self, field).data = str(shape["circle"][field])
        else:
            self.kind.data = "polygon"
            self.polygon.data = json.dumps(shape["polygon"])

    def show_errors(self, error: ValidationError) -> None:
        """The shape's errors on the field they are about: a circle's name the
        field first ("radius_m must be …"), a polygon's go to its text."""
        errors: dict[str, list[str]] = {}
        for field, messages in error.errors.items():
            for message in messages:
                target, text = field, message
                if field == "circle":
                    first, _, rest = message.partition(" ")
                    if first in ("latitude", "longitude", "radius_m"):
                        target = first
                        label = {"radius_m": "The radius"}.get(first, first.capitalize())
                        text = f"{label} {rest}"
                elif field == "polygon" and self._json_problem:
                    text = self._json_problem
                elif field == "shape":
                    target, text = "kind", "Choose a circle or a polygon."
                errors.setdefault(target, []).append(text)
        show_errors(self, ValidationError(errors))

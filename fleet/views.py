"""Portal pages of the fleet blueprint: the account's vehicles (with the CSV
import and driver assignment), drivers and landmarks, each with its add, edit and
delete dialogs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.exceptions import RequestEntityTooLarge

from core.errors import ValidationError
from core.extensions import db
from core.portal import (
    EmptyForm,
    admin_required,
    is_htmx_request,
    or_404,
    render_dialog,
    show_errors,
)
from core.times import utcnow
from fleet import records
from fleet.detector import assign_driver
from fleet.forms import (
    DriverForm,
    LandmarkForm,
    VehicleEditForm,
    VehicleForm,
    VehicleImportForm,
)
from fleet.models import Driver, Landmark, Vehicle

bp = Blueprint("fleet", __name__, url_prefix="/fleet")

# Side of the landmark drawings in the list, in CSS pixels.
LANDMARK_SVG_SIZE = 64
# Check-digit warnings flashed one by one after an import; more are summed up.
IMPORT_WARNINGS_SHOWN = 5
# Import errors listed in the table; a file wrong on every line says enough with these.
IMPORT_ERRORS_SHOWN = 200

_ERROR_KEY = re.compile(r"line (\d+): (.+)")


def _own_vehicle(vehicle_id: int) -> Vehicle:
    return or_404(records.get_account_vehicle(current_user.account_id, vehicle_id))


def _own_driver(driver_id: int) -> Driver:
    return or_404(records.get_account_driver(current_user.account_id, driver_id))


def _own_landmark(landmark_id: int) -> Landmark:
    return or_404(records.get_account_landmark(current_user.account_id, landmark_id))


def _form_dialog(
    content: str,
    title: str,
    form: FlaskForm,
    error: ValidationError | None,
    place_errors: Callable[[Any, ValidationError], None] = show_errors,
    **context: Any,
) -> Response:
    """The dialog of an add or edit form; after a refused change, the form again with
    the errors next to their fields, as a 422 (htmx swaps only 2xx and 422 answers in)."""
    if error is None:
        return render_dialog(content, title, form=form, **context)
    place_errors(form, error)
    return render_dialog(content, title, 422, form=form, **context)


@contextmanager
def _dialog_again_on_error(dialog: Callable[..., Response]) -> Iterator[None]:
    """Make the change of the block; if it raises a ValidationError, answer with
    `dialog(error=...)` instead (abort with a response ends the request with it)."""
    try:
        yield
    except ValidationError as error:
        abort(dialog(error=error))


def _committed(
    message: str, page: str, warnings: Iterable[str] = (), category: str = "success"
) -> ResponseReturnValue:
    """Commit the change, then back to the list with the message (and any warnings)
    flashed: htmx follows HX-Redirect with a full page load, which shows them and
    closes the dialog."""
    db.session.commit()
    flash(message, category)
    for warning in warnings:
        flash(warning, "warning")
    target = url_for(page)
    if is_htmx_request():
        return Response(status=204, headers={"HX-Redirect": target})
    return redirect(target)


def _confirm_delete(
    kind: str, name: str, action: str, consequence: str, what: str = ""
) -> Response:
    """The dialog that asks before deleting a vehicle, driver or landmark, saying
    what else goes or changes with it."""
    return render_dialog(
        "fleet/_confirm_delete.html",
        f"Delete {name}?",
        action=action,
        what=what or f"{kind} {name}",
        consequence=consequence,
        button_label=f"Delete {kind}",
        button=EmptyForm(),
    )


# Vehicles


@bp.get("/vehicles")
@login_required
def vehicles() -> str:
    """The account's vehicles: identity, driver, and what their reports said last."""
    return render_template(
        "fleet/vehicles.html", rows=records.vehicles_with_drivers(current_user.account_id)
    )


def _vehicle_dialog(form: VehicleForm, error: ValidationError | None = None) -> Response:
    return _form_dialog("fleet/_vehicle_form.html", "Add vehicle", form, error)


@bp.get("/vehicles/new")
@admin_required
def new_vehicle() -> Response:
    """The Add Vehicle dialog."""
    return _vehicle_dialog(VehicleForm(formdata=None))


@bp.post("/vehicles/new")
@admin_required
def add_vehicle() -> ResponseReturnValue:
    """Add a vehicle; a doubtful check digit is saved with a warning."""
    form = VehicleForm()
    with _dialog_again_on_error(partial(_vehicle_dialog, form)):
        vehicle, warnings = records.create_vehicle(current_user.account_id, form.values())
    return _committed(f"Vehicle “{vehicle.name}” added.", "fleet.vehicles", warnings)


def _vehicle_edit_dialog(
    form: VehicleEditForm, vehicle: Vehicle, error: ValidationError | None = None
) -> Response:
    form.offer_drivers(records.account_drivers(current_user.account_id))
    title = f"Edit {vehicle.name}"
    return _form_dialog("fleet/_vehicle_edit_form.html", title, form, error, vehicle=vehicle)


@bp.get("/vehicles/<int:vehicle_id>/edit")
@admin_required
def edit_vehicle(vehicle_id: int) -> Response:
    """The Edit Vehicle dialog: name, plate, group and driver; the VIN is fixed."""
    vehicle = _own_vehicle(vehicle_id)
    form = VehicleEditForm(
        formdata=None,
        data={
            "name": vehicle.name,
            "plate": vehicle.plate or "",
            "group": vehicle.group_name or "",
            "driver_id": str(vehicle.driver_id or ""),
        },
    )
    return _vehicle_edit_dialog(form, vehicle)


@bp.post("/vehicles/<int:vehicle_id>/edit")
@admin_required
def save_vehicle(vehicle_id: int) -> ResponseReturnValue:
    """Save the Edit Vehicle dialog; a new driver is assigned with its event."""
    vehicle = _own_vehicle(vehicle_id)
    form = VehicleEditForm()
    with _dialog_again_on_error(partial(_vehicle_edit_dialog, form, vehicle)):
        driver = records.update_vehicle(vehicle, form.values())
    chosen = driver.id if driver else None
    warnings = []
    if chosen != vehicle.driver_id:
        assign_driver(vehicle, driver, at=utcnow(), source="portal")
        if vehicle.driver_id != chosen:
            warnings.append(
                "The driver was not changed: the vehicle reported a newer driver assignment."
            )
    return _committed(f"Vehicle “{vehicle.name}” saved.", "fleet.vehicles", warnings)


@bp.get("/vehicles/<int:vehicle_id>/delete")
@admin_required
def confirm_delete_vehicle(vehicle_id: int) -> Response:
    """Ask before deleting a vehicle."""
    vehicle = _own_vehicle(vehicle_id)
    return _confirm_delete(
        "vehicle",
        vehicle.name,
        url_for("fleet.delete_vehicle", vehicle_id=vehicle.id),
        "Its telemetry reports and driver history are deleted with it; "
        "events already queued for your webhooks are still sent.",
        what=f"vehicle {vehicle.name} (VIN {vehicle.vin})",
    )


@bp.post("/vehicles/<int:vehicle_id>/delete")
@admin_required
def delete_vehicle(vehicle_id: int) -> ResponseReturnValue:
    """Delete a vehicle."""
    vehicle = _own_vehicle(vehicle_id)
    records.delete_vehicle(vehicle)
    return _committed(f"Vehicle “{vehicle.name}” deleted.", "fleet.vehicles")


# CSV import of vehicles


def _import_dialog(
    form: VehicleImportForm, errors: dict[str, list[str]] | None = None, status: int = 200
) -> Response:
    problems: list[tuple[int | None, str, str]] = []
    for key, messages in (errors or {}).items():
        match = _ERROR_KEY.fullmatch(key)
        line, field = (int(match.group(1)), match.group(2)) if match else (None, key)
        problems.extend((line, field, message) for message in messages)
    return render_dialog(
        "fleet/_import_form.html",
        "Import vehicles",
        status,
        form=form,
        problems=problems[:IMPORT_ERRORS_SHOWN],
        more_problems=max(0, len(problems) - IMPORT_ERRORS_SHOWN),
    )


@bp.get("/vehicles/import")
@admin_required
def import_form() -> Response:
    """The Import Vehicles dialog: upload a CSV file."""
    return _import_dialog(VehicleImportForm(formdata=None))


@bp.post("/vehicles/import")
@admin_required
def import_vehicles() -> ResponseReturnValue:
    """Import every vehicle of a CSV file, or none if any line is wrong."""
    form = VehicleImportForm()
    upload = form.file.data
    if not upload or not upload.filename:
        return _import_dialog(form, {"file": ["Choose a CSV file to import."]}, status=422)
    try:
        imported, warnings = records.import_vehicles_csv(current_user.account_id, upload.read())
    except ValidationError as error:
        return _import_dialog(form, error.errors, status=422)
    shown = warnings[:IMPORT_WARNINGS_SHOWN]
    if len(warnings) > len(shown):
        shown.append(f"… and {len(warnings) - len(shown):,} more VINs with a doubtful check digit.")
    noun = "vehicle" if len(imported) == 1 else "vehicles"
    return _committed(f"Imported {len(imported):,} {noun}.", "fleet.vehicles", shown)


@bp.errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
    """A request over the app's size limit: on the import, the form says why
    (htmx swaps only 2xx and 422 answers in)."""
    if request.endpoint != "fleet.import_vehicles":
        return render_template("errors/http.html", error=error), 413
    form = VehicleImportForm(formdata=None)
    errors = {"file": ["The file is larger than 1 MiB: split it and import the parts."]}
    return _import_dialog(form, errors, status=422 if is_htmx_request() else 413)


# Drivers


@bp.get("/drivers")
@login_required
def drivers() -> str:
    """The account's drivers and the vehicles they drive now."""
    return render_template(
        "fleet/drivers.html", rows=records.drivers_with_vehicles(current_user.account_id)
    )


def _driver_dialog(
    form: DriverForm, driver: Driver | None = None, error: ValidationError | None = None
) -> Response:
    title = f"Edit {driver.name}" if driver else "Add driver"
    return _form_dialog("fleet/_driver_form.html", title, form, error, driver=driver)


@bp.get("/drivers/new")
@admin_required
def new_driver() -> Response:
    """The Add Driver dialog."""
    return _driver_dialog(DriverForm(formdata=None))


@bp.post("/drivers/new")
@admin_required
def add_driver() -> ResponseReturnValue:
    """Add a driver."""
    form = DriverForm()
    with _dialog_again_on_error(partial(_driver_dialog, form)):
        driver = records.create_driver(current_user.account_id, form.values())
    return _committed(f"Driver “{driver.name}” added.", "fleet.drivers")


@bp.get("/drivers/<int:driver_id>/edit")
@admin_required
def edit_driver(driver_id: int) -> Response:
    """The Edit Driver dialog."""
    driver = _own_driver(driver_id)
    form = DriverForm(
        formdata=None, data={"name": driver.name, "external_id": driver.external_id or ""}
    )
    return _driver_dialog(form, driver)


@bp.post("/drivers/<int:driver_id>/edit")
@admin_required
def save_driver(driver_id: int) -> ResponseReturnValue:
    """Save the Edit Driver dialog."""
    driver = _own_driver(driver_id)
    form = DriverForm()
    with _dialog_again_on_error(partial(_driver_dialog, form, driver)):
        records.update_driver(driver, form.values())
    return _committed(f"Driver “{driver.name}” saved.", "fleet.drivers")


@bp.get("/drivers/<int:driver_id>/delete")
@admin_required
def confirm_delete_driver(driver_id: int) -> Response:
    """Ask before deleting a driver."""
    driver = _own_driver(driver_id)
    return _confirm_delete(
        "driver",
        driver.name,
        url_for("fleet.delete_driver", driver_id=driver.id),
        "Vehicles assigned to them are left without a driver.",
    )


@bp.post("/drivers/<int:driver_id>/delete")
@admin_required
def delete_driver(driver_id: int) -> ResponseReturnValue:
    """Delete a driver; their vehicles are left without one."""
    driver = _own_driver(driver_id)
    records.delete_driver(driver)
    return _committed(f"Driver “{driver.name}” deleted.", "fleet.drivers")


# Landmarks


@bp.get("/landmarks")
@login_required
def landmarks() -> str:
    """The account's landmarks, each drawn small with its kind and size."""
    summaries = records.landmark_summaries(current_user.account_id, LANDMARK_SVG_SIZE)
    # The drawings hold only numbers formatted by fleet.geometry.svg: safe as markup.
    drawings = {summary.landmark.id: Markup(summary.svg) for summary in summaries}
    return render_template("fleet/landmarks.html", summaries=summaries, drawings=drawings)


def _landmark_dialog(
    form: LandmarkForm, landmark: Landmark | None = None, error: ValidationError | None = None
) -> Response:
    title = f"Edit {landmark.name}" if landmark else "Add landmark"
    # A shape's errors go on the fields they are about: LandmarkForm places them.
    return _form_dialog(
        "fleet/_landmark_form.html",
        title,
        form,
        error,
        place_errors=LandmarkForm.show_errors,
        landmark=landmark,
    )


@bp.get("/landmarks/new")
@admin_required
def new_landmark() -> Response:
    """The Add Landmark dialog."""
    return _landmark_dialog(LandmarkForm(formdata=None))


@bp.post("/landmarks/new")
@admin_required
def add_landmark() -> ResponseReturnValue:
    """Add a landmark: a circle or a GeoJSON polygon."""
    form = LandmarkForm()
    with _dialog_again_on_error(partial(_landmark_dialog, form)):
        landmark = records.create_landmark(current_user.account_id, form.values())
    return _committed(f"Landmark “{landmark.name}” added.", "fleet.landmarks")


@bp.get("/landmarks/<int:landmark_id>/edit")
@admin_required
def edit_landmark(landmark_id: int) -> Response:
    """The Edit Landmark dialog."""
    landmark = _own_landmark(landmark_id)
    form = LandmarkForm(formdata=None, data={"name": landmark.name})
    form.fill(landmark.shape)
    return _landmark_dialog(form, landmark)


@bp.post("/landmarks/<int:landmark_id>/edit")
@admin_required
def save_landmark(landmark_id: int) -> ResponseReturnValue:
    """Save the Edit Landmark dialog."""
    landmark = _own_landmark(landmark_id)
    form = LandmarkForm()
    with _dialog_again_on_error(partial(_landmark_dialog, form, landmark)):
        records.update_landmark(landmark, form.values())
    return _committed(f"Landmark “{landmark.name}” saved.", "fleet.landmarks")


@bp.get("/landmarks/<int:landmark_id>/delete")
@admin_required
def confirm_delete_landmark(landmark_id: int) -> Response:
    """Ask before deleting a landmark."""
    landmark = _own_landmark(landmark_id)
    return _confirm_delete(
        "landmark",
        landmark.name,
        url_for("fleet.delete_landmark", landmark_id=landmark.id),
        "Vehicles inside it make no Landmark Leave event for it.",
    )


@bp.post("/landmarks/<int:landmark_id>/delete")
@admin_required
def delete_landmark(landmark_id: int) -> ResponseReturnValue:
    """Delete a landmark."""
    landmark = _own_landmark(landmark_id)
    try:
        records.delete_landmark(landmark)
    except records.LandmarkInUse as error:
        db.session.rollback()
        return _committed(str(error), "fleet.landmarks", category="error")
    return _committed(f"Landmark “{landmark.name}” deleted.", "fleet.landmarks")

"""The fleet pages of the portal: vehicles (with the CSV import and driver
assignment), drivers and landmarks — add, edit, delete, every bad field shown
with nothing written, members looking only, other accounts' ids answering 404."""

from __future__ import annotations

import html
import io
import json
import re
from datetime import UTC, datetime

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from accounts.models import Account, Role
from core.errors import ValidationError
from core.extensions import db
from fleet import records
from fleet.landmark_index import shape_of
from fleet.models import Driver, DriverAssignment, Landmark, Vehicle
from fleet.vin import check_digit
from outbox.models import OutboxMessage
from tests.conftest import HTMX, csrf_token, make_user
from tests.test_fleet_shapes import HOLE, OUTLINE
from webhooks.lifecycle import create_webhook

VEHICLES, DRIVERS, LANDMARKS = "/fleet/vehicles", "/fleet/drivers", "/fleet/landmarks"
TRUCK = {"name": "Truck 42", "vin": "1FUJGLDR3CLBP8834", "plate": "IL 4421", "group": "North"}
# A well-formed VIN whose check digit should be 3.
DOUBTFUL_VIN = "1FUJGLDR5CLBP8834"
CIRCLE = {"latitude": "41.88", "longitude": "-87.63", "radius_m": "400"}
POLYGON = json.dumps({"type": "Polygon", "coordinates": [OUTLINE, HOLE]})


def make_vin(serial: int, correct: bool = True) -> str:
    """A valid VIN, different for each serial, with a right (or a wrong) check digit."""
    body = f"1FUJGLDR0CLB{serial:05d}"
    digit = check_digit(body)
    if not correct:
        digit = "1" if digit == "0" else "0"
    return body[:8] + digit + body[9:]


@pytest.fixture
def other(app):
    """The admin of another account."""
    return make_user(account_name="Blue Freight", email="admin@blue.example.com")


def add_vehicle(account_id: int, **values: str) -> Vehicle:
    vehicle, _ = records.create_vehicle(account_id, {**TRUCK, **values})
    db.session.commit()
    return vehicle


def add_driver(account_id: int, name: str = "Dana Whitfield", external_id: str = "") -> Driver:
    driver = records.create_driver(account_id, {"name": name, "external_id": external_id})
    db.session.commit()
    return driver


def add_landmark(account_id: int, name: str = "North yard", **shape) -> Landmark:
    shape = shape or {"circle": {"latitude": 41.88, "longitude": -87.63, "radius_m": 400}}
    landmark = records.create_landmark(account_id, {"name": name, **shape})
    db.session.commit()
    return landmark


def count(model) -> int:
    return db.session.query(model).count()


def landmarks_version(account_id: int) -> int:
    return db.session.get(Account, account_id).landmarks_version


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def field_errors(page: bytes, field: str) -> str:
    match = re.search(rf'id="{field}-errors">(.*?)</ul>', page.decode(), re.S)
    return text_of(match.group(1)) if match else ""


def flashes(page: bytes) -> list[tuple[str, str]]:
    found = re.findall(r'<p class="flash flash-(\w+)">(.*?)</p>', page.decode(), re.S)
    return [(category, text_of(message)) for category, message in found]


def row_cells(page: bytes, row_id: str) -> list[str]:
    row = re.search(rf'<tr id="{row_id}">(.*?)</tr>', page.decode(), re.S)
    assert row, f"no row {row_id}"
    return [text_of(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]


def import_problems(page: bytes) -> list[tuple[str, str, str]]:
    table = re.search(r'id="import-errors">(.*?)</table>', page.decode(), re.S)
    assert table, "no table of import errors"
    rows = re.findall(r"<tr><td[^>]*>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table.group(1))
    return [(text_of(line), text_of(field), text_of(message)) for line, field, message in rows]


def upload(client, content: bytes, htmx: bool = False, filename: str = "fleet.csv"):
    """POST a file to the import, as a browser does (multipart, with the CSRF token)."""
    token = csrf_token(client.get(VEHICLES).data)
    # Encoded here, in memory: the test client spools large bodies to a file it never closes.
    boundary, body = encode_multipart(
        {"csrf_token": token, "file": FileStorage(io.BytesIO(content), filename)}
    )
    return client.post(
        "/fleet/vehicles/import",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=HTMX if htmx else {},
    )


# Navigation and empty pages


def test_the_top_nav_has_a_fleet_group(admin, client):
    page = client.get("/").data.decode()
    menu = re.search(r"<summary>Fleet</summary>(.*?)</details>", page, re.S).group(1)
    assert '<a href="/fleet/vehicles">Vehicles</a>' in menu
    assert '<a href="/fleet/drivers">Drivers</a>' in menu
    assert '<a href="/fleet/landmarks">Landmarks</a>' in menu


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (VEHICLES, "No vehicles yet. Add one with “Add vehicle”, or many at once with “Import"),
        (DRIVERS, "No drivers yet. Add one with “Add driver”"),
        (LANDMARKS, "No landmarks yet. Add one with “Add landmark”"),
    ],
)
def test_empty_pages_say_what_to_do_next(admin, client, path, message):
    assert message in text_of(client.get(path).data.decode())


@pytest.mark.parametrize("path", [VEHICLES, DRIVERS, LANDMARKS])
def test_fleet_pages_have_no_inline_code(admin, client, path):
    add_vehicle(admin.account_id)
    add_driver(admin.account_id)
    add_landmark(admin.account_id)
    add_landmark(admin.account_id, "Depot", polygon={"type": "Polygon", "coordinates": [OUTLINE]})
    response = client.get(path)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    page = response.data.decode()
    assert " style=" not in page and "<style" not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline <script>"
    assert not re.search(r"\son[a-z]+=", page), "inline event handler"


# Vehicles


def test_add_vehicle_opens_a_dialog_for_htmx_and_a_page_otherwise(admin, client):
    dialog = client.get("/fleet/vehicles/new", headers=HTMX).data.decode()
    assert dialog.lstrip().startswith('<dialog class="modal"') and "<html" not in dialog
    assert "Add vehicle" in dialog and 'name="vin"' in dialog and 'name="csrf_token"' in dialog
    assert "cannot be changed after the vehicle is added" in dialog
    page = client.get("/fleet/vehicles/new").data.decode()
    assert "<html" in page and 'name="vin"' in page
    listing = client.get(VEHICLES).data.decode()
    assert 'hx-get="/fleet/vehicles/new" hx-target="#dialog-host"' in listing


def test_a_vehicle_is_added_and_listed(admin, client, auth):
    response = auth.post(
        "/fleet/vehicles/new", {**TRUCK, "vin": " 1fujgldr3clbp8834 "}, page=VEHICLES, htmx=True
    )
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == VEHICLES
    page = client.get(VEHICLES).data
    assert flashes(page) == [("success", "Vehicle “Truck 42” added.")]
    vehicle = db.session.query(Vehicle).one()
    assert vehicle.account_id == admin.account_id
    cells = row_cells(page, f"vehicle-{vehicle.id}")
    assert cells[:8] == ["Truck 42", "1FUJGLDR3CLBP8834", "IL 4421", "North", "—", "—", "—", "—"]


def test_without_htmx_adding_redirects_to_the_list(admin, client, auth):
    response = auth.post("/fleet/vehicles/new", TRUCK, page=VEHICLES)
    assert response.status_code == 302 and response.headers["Location"] == VEHICLES
    assert count(Vehicle) == 1


def test_a_doubtful_check_digit_is_saved_with_a_warning(admin, client, auth):
    auth.post("/fleet/vehicles/new", {**TRUCK, "vin": DOUBTFUL_VIN}, page=VEHICLES)
    shown = flashes(client.get(VEHICLES).data)
    assert shown[0] == ("success", "Vehicle “Truck 42” added.")
    assert shown[1][0] == "warning" and "is 5, not 3" in shown[1][1]
    assert db.session.query(Vehicle).one().vin == DOUBTFUL_VIN


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": ""}, "name", "Required."),
        ({"name": "n" * 101}, "name", "At most 100 characters."),
        ({"vin": ""}, "vin", "Required: the 17-character VIN."),
        ({"vin": "1FUJGLDR3CLBP883"}, "vin", "A VIN has 17 characters; this has 16."),
        ({"vin": "1FUJGLDR3CLBP88O4"}, "vin", "never contains O"),
        ({"vin": "1FUJGLDR3CLBP88-4"}, "vin", "only letters and digits"),
        ({"plate": "p" * 21}, "plate", "At most 20 characters."),
        ({"group": "g" * 61}, "group", "At most 60 characters."),
    ],
)
def test_each_bad_vehicle_field_is_shown_and_nothing_saved(admin, auth, fields, field, message):
    response = auth.post("/fleet/vehicles/new", {**TRUCK, **fields}, page=VEHICLES, htmx=True)
    assert response.status_code == 422
    assert response.data.decode().lstrip().startswith('<dialog class="modal"')
    assert message in field_errors(response.data, field)
    assert count(Vehicle) == 0


def test_a_vin_already_in_the_account_is_refused(admin, auth):
    add_vehicle(admin.account_id)
    response = auth.post("/fleet/vehicles/new", {**TRUCK, "name": "Again"}, page=VEHICLES)
    assert response.status_code == 422
    assert "already has a vehicle with this VIN" in field_errors(response.data, "vin")
    assert count(Vehicle) == 1


def test_the_list_shows_driver_odometer_last_fix_and_dvir(admin, client):
    driver = add_driver(admin.account_id)
    vehicle = add_vehicle(admin.account_id)
    vehicle.driver_id = driver.id
    vehicle.odometer_mi = 48210.6
    vehicle.last_fix_at = datetime(2025, 3, 4, 15, 6, 7, tzinfo=UTC)
    vehicle.last_dvir = {
        "time": "2025-03-04T07:00:00Z",
        "driver": "Dana Whitfield",
        "defects": [],
        "safety_status": "unsafe",
    }
    db.session.commit()
    page = client.get(VEHICLES).data
    cells = row_cells(page, f"vehicle-{vehicle.id}")
    # Over two days ago: the date, with the exact time on hover.
    assert cells[4:8] == ["Dana Whitfield", "48,211 mi", "2025-03-04", "Unsafe 2025-03-04"]
    assert '<time datetime="2025-03-04T15:06:07Z" title="2025-03-04 15:06:07 UTC">' in page.decode()
    assert '<time datetime="2025-03-04T07:00:00Z" title="2025-03-04 07:00:00 UTC">' in page.decode()


def test_edit_shows_the_vin_read_only(admin, client):
    vehicle = add_vehicle(admin.account_id)
    dialog = client.get(f"/fleet/vehicles/{vehicle.id}/edit", headers=HTMX).data.decode()
    vin_input = re.search(r'<input id="vin"[^>]*>', dialog).group(0)
    assert "readonly" in vin_input and 'value="1FUJGLDR3CLBP8834"' in vin_input
    assert 'name="vin"' not in dialog
    assert "The VIN cannot be changed after the vehicle is added." in dialog
    assert 'value="Truck 42"' in dialog and 'value="IL 4421"' in dialog


def test_edit_changes_name_plate_and_group_but_never_the_vin(admin, client, auth):
    vehicle = add_vehicle(admin.account_id)
    response = auth.post(
        f"/fleet/vehicles/{vehicle.id}/edit",
        {
            "name": "Truck 43",
            "plate": "",
            "group": "South",
            "driver_id": "",
            "vin": "1FTYR10D0WUC36458",
        },
        page=VEHICLES,
        htmx=True,
    )
    assert response.status_code == 204 and response.headers["HX-Redirect"] == VEHICLES
    db.session.refresh(vehicle)
    assert (vehicle.name, vehicle.plate, vehicle.group_name, vehicle.vin) == (
        "Truck 43",
        None,
        "South",
        "1FUJGLDR3CLBP8834",
    )
    assert flashes(client.get(VEHICLES).data) == [("success", "Vehicle “Truck 43” saved.")]
    assert count(DriverAssignment) == 0


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": ""}, "name", "Required."),
        ({"plate": "p" * 21}, "plate", "At most 20 characters."),
        ({"group": "g" * 61}, "group", "At most 60 characters."),
        ({"driver_id": "999999"}, "driver_id", "Choose one of the account's drivers"),
        ({"driver_id": "Dana"}, "driver_id", "Choose one of the account's drivers"),
    ],
)
def test_a_bad_edit_shows_its_error_and_changes_nothing(admin, auth, fields, field, message):
    vehicle = add_vehicle(admin.account_id)
    form = {"name": "Truck 43", "plate": "IL 1", "group": "South", "driver_id": "", **fields}
    response = auth.post(f"/fleet/vehicles/{vehicle.id}/edit", form, page=VEHICLES, htmx=True)
    assert response.status_code == 422
    assert message in field_errors(response.data, field)
    db.session.refresh(vehicle)
    assert (vehicle.name, vehicle.plate, vehicle.group_name, vehicle.driver_id) == (
        "Truck 42",
        "IL 4421",
        "North",
        None,
    )
    assert count(DriverAssignment) == 0


def test_the_driver_is_chosen_from_the_accounts_drivers(admin, client, other):
    mine = add_driver(admin.account_id, "Dana Whitfield")
    theirs = add_driver(other.account_id, "Sam Ortega")
    vehicle = add_vehicle(admin.account_id)
    dialog = client.get(f"/fleet/vehicles/{vehicle.id}/edit", headers=HTMX).data.decode()
    options = re.findall(r'<option[^>]*value="([^"]*)"[^>]*>([^<]*)</option>', dialog)
    assert options == [("", "No driver"), (str(mine.id), "Dana Whitfield")]
    assert "Sam Ortega" not in dialog and str(theirs.id) not in [value for value, _ in options]


def test_another_accounts_driver_cannot_be_assigned(admin, auth, other):
    theirs = add_driver(other.account_id, "Sam Ortega")
    vehicle = add_vehicle(admin.account_id)
    response = auth.post(
        f"/fleet/vehicles/{vehicle.id}/edit",
        {"name": "Truck 42", "driver_id": str(theirs.id)},
        page=VEHICLES,
    )
    assert response.status_code == 422
    assert "Choose one of the account's drivers" in field_errors(response.data, "driver_id")
    db.session.refresh(vehicle)
    assert vehicle.driver_id is None and count(DriverAssignment) == 0


def test_assigning_a_driver_records_it_and_queues_the_event(admin, client, auth):
    webhook, _ = create_webhook(
        admin.account_id,
        {
            "event_type": "driver_assignment",
            "name": "Drivers",
            "url": "https://hooks.example.com/in",
        },
    )
    dana = add_driver(admin.account_id, "Dana Whitfield")
    vehicle = add_vehicle(admin.account_id)
    form = {"name": "Truck 42", "plate": "IL 4421", "group": "North", "driver_id": str(dana.id)}
    assert auth.post(f"/fleet/vehicles/{vehicle.id}/edit", form, page=VEHICLES).status_code == 302
    db.session.refresh(vehicle)
    assert vehicle.driver_id == dana.id
    assignment = db.session.query(DriverAssignment).one()
    assert (assignment.vehicle_id, assignment.driver_id, assignment.source) == (
        vehicle.id,
        dana.id,
        "portal",
    )
    message = db.session.query(OutboxMessage).one()
    assert message.target_id == webhook.id and message.event_type == "driver_assignment"
    assert message.payload["data"]["driver"]["name"] == "Dana Whitfield"
    assert row_cells(client.get(VEHICLES).data, f"vehicle-{vehicle.id}")[4] == "Dana Whitfield"
    assert row_cells(client.get(DRIVERS).data, f"driver-{dana.id}")[2] == "Truck 42"

    # Saving with the same driver assigns nothing again.
    auth.post(f"/fleet/vehicles/{vehicle.id}/edit", {**form, "name": "Truck 7"}, page=VEHICLES)
    assert count(DriverAssignment) == 1 and count(OutboxMessage) == 1

    # "No driver" is an assignment too.
    auth.post(f"/fleet/vehicles/{vehicle.id}/edit", {**form, "driver_id": ""}, page=VEHICLES)
    db.session.refresh(vehicle)
    assert vehicle.driver_id is None
    latest = db.session.query(DriverAssignment).order_by(DriverAssignment.id.desc()).first()
    assert latest.driver_id is None and latest.source == "portal"
    assert count(OutboxMessage) == 2


def test_delete_vehicle_asks_first_and_needs_the_csrf_token(admin, client, auth):
    vehicle = add_vehicle(admin.account_id)
    confirm = client.get(f"/fleet/vehicles/{vehicle.id}/delete", headers=HTMX).data.decode()
    assert "Delete vehicle Truck 42 (VIN 1FUJGLDR3CLBP8834)?" in text_of(confirm)
    assert 'name="csrf_token"' in confirm and "Delete vehicle</button>" in confirm
    assert client.post(f"/fleet/vehicles/{vehicle.id}/delete").status_code == 400
    assert count(Vehicle) == 1
    response = auth.post(f"/fleet/vehicles/{vehicle.id}/delete", page=VEHICLES, htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == VEHICLES
    assert count(Vehicle) == 0
    page = client.get(VEHICLES).data
    assert flashes(page) == [("success", "Vehicle “Truck 42” deleted.")]
    assert "No vehicles yet." in page.decode()


# CSV import


def test_the_import_dialog_explains_the_file(admin, client):
    dialog = client.get("/fleet/vehicles/import", headers=HTMX).data.decode()
    assert dialog.lstrip().startswith('<dialog class="modal"')
    assert 'enctype="multipart/form-data"' in dialog and 'type="file"' in dialog
    assert "name,vin,plate,group" in dialog and "nothing is imported" in dialog
    assert "<html" in client.get("/fleet/vehicles/import").data.decode()


def test_a_csv_file_is_imported_in_one_go(admin, client):
    content = (
        "name,vin,plate,group\n"
        f"Truck 1,{make_vin(1)},IL 1,North\n"
        f'"Van, the blue one",{make_vin(2)},,\n'
        "\n"
        f"Truck 3,{make_vin(3).lower()},IL 3,South\n"
    )
    response = upload(client, content.encode(), htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == VEHICLES
    page = client.get(VEHICLES).data
    assert flashes(page) == [("success", "Imported 3 vehicles.")]
    saved = {v.name: v for v in db.session.query(Vehicle)}
    assert set(saved) == {"Truck 1", "Van, the blue one", "Truck 3"}
    assert saved["Van, the blue one"].plate is None and saved["Truck 3"].vin == make_vin(3)
    assert saved["Truck 1"].group_name == "North"
    assert all(v.account_id == admin.account_id for v in saved.values())
    assert "Van, the blue one" in page.decode()


def test_plate_and_group_columns_are_optional(admin, client):
    content = f"VIN,Name\r\n{make_vin(1)},Truck 1\r\n{make_vin(2)},Truck 2\r\n"
    assert upload(client, content.encode()).status_code == 302
    assert {v.name for v in db.session.query(Vehicle)} == {"Truck 1", "Truck 2"}


def test_a_file_with_a_bom_is_read_the_same(admin, client):
    content = f"name,vin,plate,group\nTruck 1,{make_vin(1)},IL 1,North\n"
    response = upload(client, b"\xef\xbb\xbf" + content.encode())
    assert response.status_code == 302
    assert db.session.query(Vehicle).one().name == "Truck 1"
    assert flashes(client.get(VEHICLES).data) == [("success", "Imported 1 vehicle.")]


def test_a_file_with_errors_on_several_lines_imports_nothing(admin, client):
    content = (
        "name,vin,plate,group\n"
        f"Truck 1,{make_vin(1)},IL 1,North\n"
        "Truck 2,1FUJGLDR3CLBP883,IL 2,North\n"
        f"Truck 3,{make_vin(3)},IL 3,North\n"
        f",{make_vin(4)},IL 4,North\n"
        f"Truck 5,{make_vin(5)},{'P' * 21},{'G' * 61}\n"
        f"Truck 6,{make_vin(6)},IL 6,North,extra\n"
    )
    response = upload(client, content.encode(), htmx=True)
    assert response.status_code == 422
    assert "Nothing was imported." in text_of(response.data.decode())
    assert import_problems(response.data) == [
        ("3", "vin", "A VIN has 17 characters; this has 16."),
        ("5", "name", "Required."),
        ("6", "plate", "At most 20 characters."),
        ("6", "group", "At most 60 characters."),
        ("7", "row", "5 values, but the header names 4 columns."),
    ]
    assert count(Vehicle) == 0


def test_a_vin_twice_in_the_file_is_an_error_on_its_second_line(admin, client):
    content = (
        "name,vin\n"
        f"Truck 1,{make_vin(1)}\n"
        f"Truck 2,{make_vin(2)}\n"
        f"Truck 1 again,{make_vin(1).lower()}\n"
    )
    response = upload(client, content.encode())
    assert response.status_code == 422
    assert import_problems(response.data) == [("4", "vin", "The same VIN as line 2.")]
    assert count(Vehicle) == 0


def test_a_vin_already_in_the_account_is_an_error(admin, client):
    add_vehicle(admin.account_id, vin=make_vin(2))
    content = f"name,vin\nTruck 1,{make_vin(1)}\nTruck 2,{make_vin(2)}\n"
    response = upload(client, content.encode())
    assert import_problems(response.data) == [
        ("3", "vin", "This account already has a vehicle with this VIN.")
    ]
    assert count(Vehicle) == 1


def test_a_vin_of_another_account_is_no_conflict(admin, client, other):
    add_vehicle(other.account_id, vin=make_vin(1))
    assert upload(client, f"name,vin\nTruck 1,{make_vin(1)}\n".encode()).status_code == 302
    assert db.session.query(Vehicle).filter_by(account_id=admin.account_id).count() == 1


def test_line_numbers_count_the_lines_of_the_file(admin, client):
    content = f'name,vin\n"Truck\n1",{make_vin(1)}\n\nTruck 2,BAD\n'
    response = upload(client, content.encode())
    assert import_problems(response.data) == [("5", "vin", "A VIN has 17 characters; this has 3.")]


def test_imported_check_digit_warnings_are_flashed(admin, client):
    content = f"name,vin\nTruck 1,{make_vin(1)}\nTruck 2,{DOUBTFUL_VIN}\n"
    assert upload(client, content.encode()).status_code == 302
    shown = flashes(client.get(VEHICLES).data)
    assert shown[0] == ("success", "Imported 2 vehicles.")
    assert shown[1][0] == "warning"
    assert shown[1][1].startswith(f"Line 3 ({DOUBTFUL_VIN}):") and "is 5, not 3" in shown[1][1]
    assert count(Vehicle) == 2


def test_many_warnings_are_summed_up(admin, client):
    rows = "".join(f"Truck {n},{make_vin(n, correct=False)}\n" for n in range(12))
    assert upload(client, f"name,vin\n{rows}".encode()).status_code == 302
    shown = flashes(client.get(VEHICLES).data)
    doubtful = [message for category, message in shown if category == "warning"]
    assert len(doubtful) == 6 and doubtful[-1] == "… and 7 more VINs with a doubtful check digit."


@pytest.mark.parametrize(
    ("content", "line", "field", "message"),
    [
        (b"", "1", "header", "The first line must be the header: name, vin, plate, group."),
        (b"name,vin,plate,group\n", "—", "file", "No vehicles"),
        (b"name,plate\nTruck 1,IL 1\n", "1", "header", "No “vin” column"),
        (b"name,vin,colour\n", "1", "header", "Unknown column “colour”"),
        (b"name,vin,vin\n", "1", "header", "The column “vin” appears twice."),
        (b"name,vin\nTr\xe9s,1FUJGLDR3CLBP8834\n", "—", "file", "Line 2 is not UTF-8 text."),
    ],
)
def test_a_file_that_is_wrong_as_a_whole_says_why(admin, client, content, line, field, message):
    response = upload(client, content)
    assert response.status_code == 422
    first = import_problems(response.data)[0]
    assert first[:2] == (line, field) and message in first[2]
    assert count(Vehicle) == 0


def test_at_most_5000_vehicles_per_file(admin, client):
    rows = "".join(f"Truck {n},{make_vin(n)}\n" for n in range(5001))
    response = upload(client, f"name,vin\n{rows}".encode())
    assert import_problems(response.data) == [
        ("—", "file", "At most 5,000 vehicles in one file; this has 5,001.")
    ]
    assert count(Vehicle) == 0


def test_5000_vehicles_are_imported(admin, client):
    rows = "".join(f"Truck {n},{make_vin(n)}\n" for n in range(5000))
    assert upload(client, f"name,vin\n{rows}".encode()).status_code == 302
    assert count(Vehicle) == 5000


@pytest.mark.parametrize("htmx", [False, True])
def test_a_file_over_1_mib_is_refused_with_a_message(admin, client, htmx):
    content = b"name,vin\n" + b"x" * (1024 * 1024)
    response = upload(client, content, htmx=htmx)
    assert response.status_code == (422 if htmx else 413)
    assert "The file is larger than 1 MiB" in text_of(response.data.decode())
    assert count(Vehicle) == 0


def test_no_file_chosen(admin, client):
    token = csrf_token(client.get(VEHICLES).data)
    response = client.post("/fleet/vehicles/import", data={"csrf_token": token})
    assert response.status_code == 422
    assert import_problems(response.data) == [("—", "file", "Choose a CSV file to import.")]


def test_the_import_function_keys_errors_by_line_and_field(app):
    user = make_user()
    content = f"name,vin\nTruck 1,{make_vin(1)}\n,{make_vin(1)}\n".encode()
    with pytest.raises(ValidationError) as caught:
        records.import_vehicles_csv(user.account_id, content)
    assert caught.value.errors == {
        "line 3: name": ["Required."],
        "line 3: vin": ["The same VIN as line 2."],
    }
    with pytest.raises(ValidationError) as caught:
        records.import_vehicles_csv(user.account_id, b"x" * (records.MAX_IMPORT_BYTES + 1))
    assert list(caught.value.errors) == ["file"]


# Drivers


def test_a_driver_is_added_edited_and_deleted(admin, client, auth):
    dialog = client.get("/fleet/drivers/new", headers=HTMX).data.decode()
    assert "Add driver" in dialog and 'name="external_id"' in dialog
    response = auth.post(
        "/fleet/drivers/new",
        {"name": "Dana Whitfield", "external_id": "E-17"},
        page=DRIVERS,
        htmx=True,
    )
    assert response.status_code == 204 and response.headers["HX-Redirect"] == DRIVERS
    driver = db.session.query(Driver).one()
    page = client.get(DRIVERS).data
    assert flashes(page) == [("success", "Driver “Dana Whitfield” added.")]
    assert row_cells(page, f"driver-{driver.id}")[:3] == ["Dana Whitfield", "E-17", "—"]

    edit = client.get(f"/fleet/drivers/{driver.id}/edit", headers=HTMX).data.decode()
    assert 'value="Dana Whitfield"' in edit and 'value="E-17"' in edit
    auth.post(
        f"/fleet/drivers/{driver.id}/edit", {"name": "Dana W.", "external_id": ""}, page=DRIVERS
    )
    db.session.refresh(driver)
    assert (driver.name, driver.external_id) == ("Dana W.", None)

    vehicle = add_vehicle(admin.account_id)
    vehicle.driver_id = driver.id
    db.session.commit()
    confirm = client.get(f"/fleet/drivers/{driver.id}/delete", headers=HTMX).data.decode()
    assert "Vehicles assigned to them are left without a driver." in confirm
    response = auth.post(f"/fleet/drivers/{driver.id}/delete", page=DRIVERS)
    assert response.status_code == 302
    assert count(Driver) == 0
    db.session.refresh(vehicle)
    assert vehicle.driver_id is None
    assert flashes(client.get(DRIVERS).data) == [("success", "Driver “Dana W.” deleted.")]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": ""}, "name", "Required."),
        ({"name": "   "}, "name", "Required."),
        ({"name": "n" * 101}, "name", "At most 100 characters."),
        ({"name": "Sam Ortega"}, "name", "This account already has a driver with this name."),
        ({"external_id": "e" * 61}, "external_id", "At most 60 characters."),
    ],
)
def test_each_bad_driver_field_is_shown_and_nothing_saved(admin, auth, fields, field, message):
    add_driver(admin.account_id, "Sam Ortega")
    form = {"name": "Dana Whitfield", "external_id": "E-17", **fields}
    response = auth.post("/fleet/drivers/new", form, page=DRIVERS, htmx=True)
    assert response.status_code == 422
    assert message in field_errors(response.data, field)
    assert count(Driver) == 1


def test_a_bad_driver_edit_changes_nothing(admin, auth):
    add_driver(admin.account_id, "Sam Ortega")
    dana = add_driver(admin.account_id, "Dana Whitfield", "E-17")
    response = auth.post(
        f"/fleet/drivers/{dana.id}/edit",
        {"name": "Sam Ortega", "external_id": "e" * 61},
        page=DRIVERS,
    )
    assert response.status_code == 422
    assert "already has a driver with this name" in field_errors(response.data, "name")
    assert "At most 60 characters." in field_errors(response.data, "external_id")
    db.session.refresh(dana)
    assert (dana.name, dana.external_id) == ("Dana Whitfield", "E-17")
    # Keeping one's own name is no clash.
    ok = auth.post(f"/fleet/drivers/{dana.id}/edit", {"name": "Dana Whitfield"}, page=DRIVERS)
    assert ok.status_code == 302


def test_a_driver_name_may_repeat_across_accounts(admin, auth, other):
    add_driver(other.account_id, "Dana Whitfield")
    response = auth.post("/fleet/drivers/new", {"name": "Dana Whitfield"}, page=DRIVERS)
    assert response.status_code == 302 and count(Driver) == 2


# Landmarks


def test_a_circle_landmark_is_added_and_drawn(admin, client, auth):
    version = landmarks_version(admin.account_id)
    dialog = client.get("/fleet/landmarks/new", headers=HTMX).data.decode()
    assert 'name="kind"' in dialog and 'name="radius_m"' in dialog and 'name="polygon"' in dialog
    assert "[longitude, latitude]" in dialog and '{"type": "Polygon"' in html.unescape(dialog)
    response = auth.post(
        "/fleet/landmarks/new",
        {"name": "North yard", "kind": "circle", **CIRCLE},
        page=LANDMARKS,
        htmx=True,
    )
    assert response.status_code == 204 and response.headers["HX-Redirect"] == LANDMARKS
    landmark = db.session.query(Landmark).one()
    assert landmark.shape == {"circle": {"latitude": 41.88, "longitude": -87.63, "radius_m": 400}}
    assert landmarks_version(admin.account_id) == version + 1
    page = client.get(LANDMARKS).data
    assert flashes(page) == [("success", "Landmark “North yard” added.")]
    cells = row_cells(page, f"landmark-{landmark.id}")
    assert cells[1:4] == ["North yard", "Circle", "radius 400 m"]
    row = re.search(rf'<tr id="landmark-{landmark.id}">(.*?)</tr>', page.decode(), re.S).group(1)
    drawing = re.search(r"<svg [^>]*>(.*?)</svg>", row, re.S)
    assert drawing and 'class="landmark-shape"' in row and "<circle " in drawing.group(1)


def test_a_polygon_with_a_hole_is_added_and_drawn(admin, client, auth):
    response = auth.post(
        "/fleet/landmarks/new",
        {"name": "Depot", "kind": "polygon", "polygon": POLYGON, **CIRCLE},
        page=LANDMARKS,
    )
    assert response.status_code == 302
    landmark = db.session.query(Landmark).one()
    assert landmark.shape == {"polygon": {"type": "Polygon", "coordinates": [OUTLINE, HOLE]}}
    assert not shape_of(landmark.shape).contains(41.88, -87.63)  # in the hole
    page = client.get(LANDMARKS).data
    cells = row_cells(page, f"landmark-{landmark.id}")
    # 0.02° square at 41.88° N less its 0.01° hole: about 1,655 m × 2,224 m × ¾.
    assert cells[1:4] == ["Depot", "Polygon", "2.76 km²"]
    row = re.search(rf'<tr id="landmark-{landmark.id}">(.*?)</tr>', page.decode(), re.S).group(1)
    path = re.search(r'<path d="([^"]+)" fill-rule="evenodd"/>', row).group(1)
    assert path.count("M") == 2 and path.count("Z") == 2  # the outline and the hole


def test_a_small_polygon_is_sized_in_square_metres(admin, client):
    d = 0.001
    ring = [[-87.63, 41.88], [-87.63 + d, 41.88], [-87.63 + d, 41.88 + d], [-87.63, 41.88]]
    landmark = add_landmark(
        admin.account_id, "Gate", polygon={"type": "Polygon", "coordinates": [ring]}
    )
    assert row_cells(client.get(LANDMARKS).data, f"landmark-{landmark.id}")[3] == "4,603 m²"


def test_a_landmark_is_edited_from_circle_to_polygon_and_deleted(admin, client, auth):
    landmark = add_landmark(admin.account_id)
    version = landmarks_version(admin.account_id)
    dialog = client.get(f"/fleet/landmarks/{landmark.id}/edit", headers=HTMX).data.decode()
    assert 'value="41.88"' in dialog and 'value="400"' in dialog
    assert re.search(r'<input checked[^>]*value="circle"', dialog)
    response = auth.post(
        f"/fleet/landmarks/{landmark.id}/edit",
        {"name": "Depot", "kind": "polygon", "polygon": POLYGON},
        page=LANDMARKS,
        htmx=True,
    )
    assert response.status_code == 204
    db.session.refresh(landmark)
    assert landmark.name == "Depot" and "polygon" in landmark.shape
    assert landmarks_version(admin.account_id) == version + 1
    dialog = client.get(f"/fleet/landmarks/{landmark.id}/edit", headers=HTMX).data.decode()
    assert re.search(r'<input checked[^>]*value="polygon"', dialog) and "-87.635" in dialog

    confirm = client.get(f"/fleet/landmarks/{landmark.id}/delete", headers=HTMX).data.decode()
    assert "Delete landmark Depot?" in text_of(confirm) and 'name="csrf_token"' in confirm
    assert auth.post(f"/fleet/landmarks/{landmark.id}/delete", page=LANDMARKS).status_code == 302
    assert count(Landmark) == 0
    assert landmarks_version(admin.account_id) == version + 2
    assert flashes(client.get(LANDMARKS).data) == [("success", "Landmark “Depot” deleted.")]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": ""}, "name", "Required."),
        ({"name": "n" * 101}, "name", "At most 100 characters."),
        ({"latitude": "91"}, "latitude", "Latitude must be between -90 and 90."),
        ({"latitude": ""}, "latitude", "Latitude must be a number."),
        ({"longitude": "east"}, "longitude", "Longitude must be a number."),
        ({"longitude": "-180.5"}, "longitude", "Longitude must be between -180 and 180."),
        ({"radius_m": "0"}, "radius_m", "The radius must be between 1 and 100,000 metres."),
        ({"radius_m": "nan"}, "radius_m", "The radius must be a number of metres."),
        ({"kind": "polygon", "polygon": ""}, "polygon", "Paste the polygon as GeoJSON."),
        ({"kind": "polygon", "polygon": '{"type": "Polygon",'}, "polygon", "Not valid JSON"),
        (
            {"kind": "polygon", "polygon": '{"type": "Point", "coordinates": [1, 2]}'},
            "polygon",
            "A polygon is GeoJSON",
        ),
        (
            {
                "kind": "polygon",
                "polygon": '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}',
            },
            "polygon",
            "Each ring must end where it starts.",
        ),
        (
            {
                "kind": "polygon",
                "polygon": json.dumps(
                    {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
                ),
            },
            "polygon",
            "The polygon is not valid: Self-intersection",
        ),
        ({"kind": "triangle"}, "kind", "Choose a circle or a polygon."),
    ],
)
def test_each_bad_landmark_field_is_shown_and_nothing_saved(admin, auth, fields, field, message):
    version = landmarks_version(admin.account_id)
    form = {"name": "North yard", "kind": "circle", **CIRCLE, **fields}
    response = auth.post("/fleet/landmarks/new", form, page=LANDMARKS, htmx=True)
    assert response.status_code == 422
    assert message in field_errors(response.data, field)
    assert count(Landmark) == 0
    assert landmarks_version(admin.account_id) == version


def test_a_bad_landmark_edit_changes_nothing(admin, auth):
    landmark = add_landmark(admin.account_id)
    version = landmarks_version(admin.account_id)
    response = auth.post(
        f"/fleet/landmarks/{landmark.id}/edit",
        {"name": "", "kind": "circle", **CIRCLE, "radius_m": "200000"},
        page=LANDMARKS,
    )
    assert response.status_code == 422
    assert "Required." in field_errors(response.data, "name")
    assert "between 1 and 100,000 metres" in field_errors(response.data, "radius_m")
    db.session.refresh(landmark)
    assert landmark.name == "North yard" and landmark.shape["circle"]["radius_m"] == 400
    assert landmarks_version(admin.account_id) == version


def test_an_edit_choosing_no_shape_changes_nothing(admin, auth):
    landmark = add_landmark(admin.account_id)
    version = landmarks_version(admin.account_id)
    form = {"name": "Renamed", "kind": "triangle", **CIRCLE}
    response = auth.post(f"/fleet/landmarks/{landmark.id}/edit", form, page=LANDMARKS)
    assert response.status_code == 422
    assert "Choose a circle or a polygon." in field_errors(response.data, "kind")
    db.session.refresh(landmark)
    assert landmark.name == "North yard" and "circle" in landmark.shape
    assert landmarks_version(admin.account_id) == version


def test_a_circle_shows_every_bad_field_at_once(admin, auth):
    form = {"name": "North yard", "kind": "circle", "latitude": "91", "longitude": "east"}
    response = auth.post("/fleet/landmarks/new", {**form, "radius_m": "0"}, page=LANDMARKS)
    assert response.status_code == 422
    assert "Latitude must be between -90 and 90." in field_errors(response.data, "latitude")
    assert "Longitude must be a number." in field_errors(response.data, "longitude")
    assert "between 1 and 100,000 metres" in field_errors(response.data, "radius_m")
    assert count(Landmark) == 0


# Members, other accounts, CSRF


def test_members_see_the_lists_without_buttons(app, client, auth):
    admin = make_user()
    vehicle = add_vehicle(admin.account_id)
    driver = add_driver(admin.account_id)
    landmark = add_landmark(admin.account_id)
    make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    auth.login("viewer@acme.example.com")
    for path, name in [
        (VEHICLES, "Truck 42"),
        (DRIVERS, "Dana Whitfield"),
        (LANDMARKS, "North yard"),
    ]:
        page = client.get(path).data.decode()
        assert name in page
        assert "/new" not in page and "/edit" not in page and "/delete" not in page
        assert "/import" not in page and 'hx-target="#dialog-host"' not in page
    for path in [
        "/fleet/vehicles/new",
        "/fleet/vehicles/import",
        "/fleet/drivers/new",
        "/fleet/landmarks/new",
        f"/fleet/vehicles/{vehicle.id}/edit",
        f"/fleet/drivers/{driver.id}/delete",
        f"/fleet/landmarks/{landmark.id}/edit",
    ]:
        assert client.get(path).status_code == 403, path
    new_truck = {**TRUCK, "vin": make_vin(1)}
    assert auth.post("/fleet/vehicles/new", new_truck, VEHICLES).status_code == 403
    assert auth.post("/fleet/drivers/new", {"name": "Sam"}, DRIVERS).status_code == 403
    assert auth.post(f"/fleet/vehicles/{vehicle.id}/delete", page=VEHICLES).status_code == 403
    assert auth.post(f"/fleet/landmarks/{landmark.id}/delete", page=VEHICLES).status_code == 403
    assert (count(Vehicle), count(Driver), count(Landmark)) == (1, 1, 1)
    empty = make_user(account_name="Empty", email="admin@empty.example.com")
    make_user(email="viewer@empty.example.com", role=Role.MEMBER, admin=empty)
    auth.logout()
    auth.login("viewer@empty.example.com")
    page = text_of(client.get(VEHICLES).data.decode())
    assert "No vehicles yet. An admin of the account can add them." in page


def test_lists_show_only_the_accounts_own(admin, client, other):
    add_vehicle(other.account_id, name="Their truck")
    add_driver(other.account_id, "Their driver")
    add_landmark(other.account_id, "Their yard")
    assert "Their truck" not in client.get(VEHICLES).data.decode()
    assert "Their driver" not in client.get(DRIVERS).data.decode()
    assert "Their yard" not in client.get(LANDMARKS).data.decode()


def test_another_accounts_ids_are_404_on_every_route(admin, client, auth, other):
    vehicle = add_vehicle(other.account_id)
    driver = add_driver(other.account_id)
    landmark = add_landmark(other.account_id)
    version = landmarks_version(other.account_id)
    forms = {
        f"/fleet/vehicles/{vehicle.id}": {"name": "Mine now", "driver_id": ""},
        f"/fleet/drivers/{driver.id}": {"name": "Mine now"},
        f"/fleet/landmarks/{landmark.id}": {"name": "Mine now", "kind": "circle", **CIRCLE},
    }
    for base, form in forms.items():
        for action in ["edit", "delete"]:
            assert client.get(f"{base}/{action}").status_code == 404, f"GET {base}/{action}"
            assert client.get(f"{base}/{action}", headers=HTMX).status_code == 404
            response = auth.post(f"{base}/{action}", form, page=VEHICLES)
            assert response.status_code == 404, f"POST {base}/{action}"
    db.session.refresh(vehicle)
    db.session.refresh(driver)
    db.session.refresh(landmark)
    assert vehicle.name == "Truck 42" and vehicle.driver_id is None
    assert (driver.name, landmark.name) == ("Dana Whitfield", "North yard")
    assert landmarks_version(other.account_id) == version
    assert count(DriverAssignment) == 0


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/fleet/vehicles/new", TRUCK),
        ("/fleet/drivers/new", {"name": "Dana Whitfield"}),
        ("/fleet/landmarks/new", {"name": "North yard", "kind": "circle", **CIRCLE}),
    ],
)
def test_a_form_without_its_csrf_token_is_refused(admin, client, path, form):
    response = client.post(path, data=form)
    assert response.status_code == 400
    assert (count(Vehicle), count(Driver), count(Landmark)) == (0, 0, 0)


def test_edits_deletes_and_imports_without_csrf_are_refused(admin, client):
    vehicle = add_vehicle(admin.account_id)
    driver = add_driver(admin.account_id)
    landmark = add_landmark(admin.account_id)
    for path in [
        f"/fleet/vehicles/{vehicle.id}/edit",
        f"/fleet/vehicles/{vehicle.id}/delete",
        f"/fleet/drivers/{driver.id}/edit",
        f"/fleet/drivers/{driver.id}/delete",
        f"/fleet/landmarks/{landmark.id}/edit",
        f"/fleet/landmarks/{landmark.id}/delete",
    ]:
        assert client.post(path, data={"name": "Changed"}).status_code == 400, path
    content = f"name,vin\nTruck 1,{make_vin(1)}\n".encode()
    response = client.post(
        "/fleet/vehicles/import",
        data={"file": (io.BytesIO(content), "f.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert (count(Vehicle), count(Driver), count(Landmark)) == (1, 1, 1)
    db.session.refresh(vehicle)
    assert vehicle.name == "Truck 42"

"""Two requests adding the same VIN, driver name or email at once: both pass the
"is it taken?" check, one commits first, and the other must still get the answer a
duplicate gets (422 with the field's error in the API, the form error in the
portal) — never a 500 from the database's unique constraint.

The race is made deterministic: the moment the app sends its INSERT, another
connection commits the same row first, exactly as a concurrent request that won
would have. A second test runs real concurrent requests through the API."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

from accounts.models import Role, User
from core.extensions import db
from core.times import format_rfc3339, utcnow
from fleet import records
from fleet.models import Driver, Vehicle
from tests.conftest import bearer, make_user
from tests.test_fleet_portal import TRUCK, field_errors, make_vin

VEHICLES, DRIVERS = "/api/v1/vehicles", "/api/v1/drivers"


@contextmanager
def committed_meanwhile(table: str, row: dict[str, Any]) -> Iterator[list[str]]:
    """Inside: when the app first writes to `table` (INSERT or UPDATE), another
    connection commits `row` into it just before, as a concurrent request that
    passed the same check a moment earlier would have. Yields the statements it
    raced, so a test can tell the race happened."""
    engine = db.engine
    raced: list[str] = []
    writes = re.compile(rf'^\s*(INSERT INTO|UPDATE) "?{table}"?\s', re.I)

    def commit_first(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if raced or not writes.match(statement):
            return
        raced.append(statement)
        with engine.begin() as other:
            other.execute(insert(db.metadata.tables[table]).values(**row))

    event.listen(engine, "before_cursor_execute", commit_first)
    try:
        yield raced
    finally:
        event.remove(engine, "before_cursor_execute", commit_first)


def rows(model: Any, *where: Any) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def admin_headers(app) -> dict[str, str]:
    return bearer(make_user())


def test_the_api_answers_a_vin_taken_meanwhile_like_any_duplicate(client, admin_headers):
    account_id = db.session.scalar(select(User.account_id))
    won = {"account_id": account_id, "name": "Won the race", "vin": TRUCK["vin"]}
    with committed_meanwhile("vehicle", won) as raced:
        response = client.post(VEHICLES, json=TRUCK, headers=admin_headers)
    assert raced, "the app never inserted the vehicle"
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json["errors"]["vin"] == ["This account already has a vehicle with this VIN."]
    assert [v.name for v in db.session.scalars(select(Vehicle))] == ["Won the race"]


def test_the_portal_shows_a_vin_taken_meanwhile_as_the_fields_error(admin, auth):
    won = {"account_id": admin.account_id, "name": "Won the race", "vin": TRUCK["vin"]}
    with committed_meanwhile("vehicle", won) as raced:
        response = auth.post("/fleet/vehicles/new", TRUCK, page="/fleet/vehicles")
    assert raced
    assert response.status_code == 422
    assert "already has a vehicle with this VIN" in field_errors(response.data, "vin")
    assert rows(Vehicle) == 1


def test_a_csv_import_racing_a_vin_imports_nothing_and_names_the_line(admin, client):
    from tests.test_fleet_portal import import_problems, upload

    vins = [make_vin(1), make_vin(2)]
    won = {"account_id": admin.account_id, "name": "Won the race", "vin": vins[1]}
    content = f"name,vin\nTruck 1,{vins[0]}\nTruck 2,{vins[1]}\n".encode()
    with committed_meanwhile("vehicle", won) as raced:
        response = upload(client, content)
    assert raced
    assert response.status_code == 422
    assert ("3", "vin", "This account already has a vehicle with this VIN.") in import_problems(
        response.data
    )
    assert rows(Vehicle) == 1


def test_a_driver_name_taken_meanwhile_is_refused_on_create_and_rename(client, admin_headers):
    account_id = db.session.scalar(select(User.account_id))
    with committed_meanwhile("driver", {"account_id": account_id, "name": "Dana"}) as raced:
        response = client.post(DRIVERS, json={"name": "Dana"}, headers=admin_headers)
    assert raced and response.status_code == 422
    assert response.json["errors"]["name"] == ["This account already has a driver with this name."]

    sam = client.post(DRIVERS, json={"name": "Sam"}, headers=admin_headers).json
    with committed_meanwhile("driver", {"account_id": account_id, "name": "Lee"}) as raced:
        response = client.patch(
            f"{DRIVERS}/{sam['id']}", json={"name": "Lee"}, headers=admin_headers
        )
    assert raced and response.status_code == 422
    assert response.json["errors"]["name"] == ["This account already has a driver with this name."]
    assert sorted(d.name for d in db.session.scalars(select(Driver))) == ["Dana", "Lee", "Sam"]


def test_an_email_taken_meanwhile_is_the_forms_error(app, admin, auth):
    won = {
        "account_id": admin.account_id,
        "email": "new.hire@acme.example.com",
        "password_hash": "x",
        "role": Role.MEMBER.value,
    }
    form = {"email": "New.Hire@acme.example.com", "role": "member", "password": "a long password"}
    with committed_meanwhile("user", won) as raced:
        response = auth.post("/account/users", form, page="/account/users")
    assert raced
    assert response.status_code == 422
    assert b"A user with this email address already exists." in response.data
    assert rows(User, User.email == "new.hire@acme.example.com") == 1


def test_the_callers_rollback_still_undoes_the_new_rows(app):
    """The savepoint that catches a taken key must not commit on its own (SQLite
    would, were its transaction not opened first): callers commit, or roll back."""
    account_id = make_user().account_id
    records.create_vehicle(account_id, TRUCK)
    records.create_driver(account_id, {"name": "Dana"})
    db.session.rollback()
    assert (rows(Vehicle), rows(Driver)) == (0, 0)
    records.create_vehicle(account_id, TRUCK)
    db.session.commit()
    assert rows(Vehicle) == 1


def test_concurrent_requests_adding_one_vin_get_one_201_and_no_500(app, admin_headers):
    """Real concurrency: two clients post the same VIN at the same moment, many times."""
    rounds, outcomes = 15, []
    clients = [app.test_client(), app.test_client()]
    barrier = threading.Barrier(len(clients))

    def post(client: Any, vin: str, seen: list[Any]) -> None:
        barrier.wait()
        try:
            seen.append(client.post(VEHICLES, json={**TRUCK, "vin": vin}, headers=admin_headers))
        except Exception as error:  # what a 500 is in a test app: the error itself
            seen.append(error)

    for serial in range(rounds):
        vin, seen = make_vin(100 + serial), []
        threads = [threading.Thread(target=post, args=(c, vin, seen)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcomes.append(sorted(str(getattr(r, "status_code", repr(r))) for r in seen))
    assert all(codes == ["201", "422"] for codes in outcomes), outcomes
    assert rows(Vehicle) == rounds


def test_a_report_naming_a_driver_added_meanwhile_assigns_that_driver(app, client, admin_headers):
    """The ingest adds a driver a report names for the first time; when another
    request adds the same driver first, the report is still taken, with that driver."""
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: the ingest holds it, no race to lose")
    account_id = db.session.scalar(select(User.account_id))
    client.post(VEHICLES, json=TRUCK, headers=admin_headers)
    report = {
        "vin": TRUCK["vin"],
        "type": "driver_assignment",
        "driver": "Dana Whitfield",
        "time": format_rfc3339(utcnow() - timedelta(minutes=1)),
    }
    won = {"account_id": account_id, "name": "Dana Whitfield", "external_id": "won"}
    with committed_meanwhile("driver", won) as raced:
        response = client.post("/api/v1/telemetry", json=report, headers=admin_headers)
    assert raced and response.status_code == 202, response.json
    (driver,) = db.session.scalars(select(Driver))
    assert driver.external_id == "won"
    assert db.session.scalars(select(Vehicle)).one().driver_id == driver.id

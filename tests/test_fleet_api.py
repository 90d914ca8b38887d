"""Vehicles and landmarks through the API: valid adds, every bad field with its
message and nothing saved, the check-digit warning, tenancy and pages."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from accounts.models import Role
from core.extensions import db
from fleet.landmark_index import shape_of
from fleet.models import Landmark, Vehicle
from tests.conftest import bearer, make_user
from tests.test_fleet_shapes import HOLE, OUTLINE

TRUCK = {"name": "Truck 42", "vin": "1FUJGLDR3CLBP8834", "plate": "IL 4421", "group": "North"}


@pytest.fixture
def headers(app):
    return bearer(make_user())


def test_a_vehicle_is_added_and_listed(client, headers):
    created = client.post(
        "/api/v1/vehicles", json={**TRUCK, "vin": "1fujgldr3clbp8834"}, headers=headers
    )
    assert created.status_code == 201
    assert created.json["vin"] == "1FUJGLDR3CLBP8834" and created.json["warnings"] == []
    assert created.json["group"] == "North"
    listed = client.get("/api/v1/vehicles", headers=headers).json
    assert [v["vin"] for v in listed["vehicles"]] == ["1FUJGLDR3CLBP8834"]


def test_a_wrong_check_digit_is_saved_with_a_warning(client, headers):
    created = client.post(
        "/api/v1/vehicles", json={**TRUCK, "vin": "1FUJGLDR5CLBP8834"}, headers=headers
    )
    assert created.status_code == 201
    assert "is 5, not 3" in created.json["warnings"][0]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"vin": "1FUJGLDR3CLBP883"}, "vin", "17 characters"),
        ({"vin": "1FUJGLDR3CLBP88O4"}, "vin", "never contains O"),
        ({"vin": None}, "vin", "Required"),
        ({"name": ""}, "name", "Required."),
        ({"name": "x" * 101}, "name", "At most 100 characters."),
        ({"plate": 12}, "plate", "A string."),
        ({"colour": "red"}, "colour", "Not a field here."),
    ],
)
def test_bad_vehicle_fields_are_named_and_nothing_saved(client, headers, body, field, message):
    response = client.post("/api/v1/vehicles", json={**TRUCK, **body}, headers=headers)
    assert response.status_code == 422
    assert message in " ".join(response.json["errors"][field])
    assert db.session.query(Vehicle).count() == 0


def test_a_vin_is_unique_per_account_not_across_accounts(client, headers):
    assert client.post("/api/v1/vehicles", json=TRUCK, headers=headers).status_code == 201
    again = client.post("/api/v1/vehicles", json=TRUCK, headers=headers)
    assert again.status_code == 422 and "already has a vehicle" in again.json["errors"]["vin"][0]
    other = bearer(make_user(email="admin@blue.example.com"))
    assert client.post("/api/v1/vehicles", json=TRUCK, headers=other).status_code == 201
    mine = client.get("/api/v1/vehicles", headers=headers).json["vehicles"]
    assert len(mine) == 1


def test_landmarks_take_a_circle_or_a_polygon(client, headers):
    circle = {"latitude": 41.88, "longitude": -87.63, "radius_m": 400}
    made = client.post(
        "/api/v1/landmarks", json={"name": "Yard", "circle": circle}, headers=headers
    )
    assert made.status_code == 201 and made.json["circle"] == circle
    polygon = {"type": "Polygon", "coordinates": [OUTLINE, HOLE]}
    made = client.post(
        "/api/v1/landmarks", json={"name": "Depot", "polygon": polygon}, headers=headers
    )
    assert made.status_code == 201
    depot = db.session.get(Landmark, made.json["id"])
    assert shape_of(depot.shape).contains(41.872, -87.638)
    names = [
        lm["name"] for lm in client.get("/api/v1/landmarks", headers=headers).json["landmarks"]
    ]
    assert names == ["Yard", "Depot"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "name": "Both",
                "circle": {"latitude": 1, "longitude": 1, "radius_m": 5},
                "polygon": {"type": "Polygon", "coordinates": [OUTLINE]},
            },
            "shape",
        ),
        ({"name": "Neither"}, "shape"),
        ({"name": "Far", "circle": {"latitude": 1, "longitude": 1, "radius_m": 10**7}}, "circle"),
        (
            {
                "name": "Bowtie",
                "polygon": {
                    "type": "Polygon",
                    "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
                },
            },
            "polygon",
        ),
        ({"circle": {"latitude": 1, "longitude": 1, "radius_m": 5}}, "name"),
    ],
)
def test_bad_landmarks_are_refused_and_nothing_saved(client, headers, body, field):
    response = client.post("/api/v1/landmarks", json=body, headers=headers)
    assert response.status_code == 422 and field in response.json["errors"]
    assert db.session.query(Landmark).count() == 0


def test_members_may_list_but_not_add(app, client):
    admin = make_user()
    member = bearer(make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin))
    assert client.get("/api/v1/vehicles", headers=member).status_code == 200
    assert client.post("/api/v1/vehicles", json=TRUCK, headers=member).status_code == 403
    assert client.post("/api/v1/landmarks", json={"name": "x"}, headers=member).status_code == 403


def test_a_vehicle_is_read_changed_and_deleted(client, headers):
    vehicle = client.post("/api/v1/vehicles", json=TRUCK, headers=headers).json
    url = f"/api/v1/vehicles/{vehicle['id']}"
    assert client.get(url, headers=headers).json["driver"] is None
    changed = client.patch(url, json={"name": "Truck 43", "group": None}, headers=headers)
    assert changed.status_code == 200
    assert (changed.json["name"], changed.json["group"], changed.json["plate"]) == (
        "Truck 43",
        None,
        "IL 4421",
    )
    refused = client.patch(url, json={"vin": "1M8GDM9AXKP042788", "name": ""}, headers=headers)
    assert refused.status_code == 422 and set(refused.json["errors"]) == {"vin", "name"}
    assert client.get(url, headers=headers).json["name"] == "Truck 43"
    assert client.delete(url, headers=headers).status_code == 204
    assert client.get(url, headers=headers).status_code == 404


def test_assigning_a_driver_through_the_api_makes_the_event(client, headers):
    from outbox.models import OutboxMessage
    from webhooks.lifecycle import create_webhook

    vehicle = client.post("/api/v1/vehicles", json=TRUCK, headers=headers).json
    driver = client.post(
        "/api/v1/drivers", json={"name": "Dana Whitfield", "external_id": "E-17"}, headers=headers
    )
    assert driver.status_code == 201 and driver.json["external_id"] == "E-17"
    account_id = db.session.get(Vehicle, vehicle["id"]).account_id
    subscription = {
        "event_type": "driver_assignment",
        "name": "d",
        "url": "https://hooks.example.com/d",
    }
    webhook, _ = create_webhook(account_id, subscription)
    db.session.commit()
    url = f"/api/v1/vehicles/{vehicle['id']}"
    assigned = client.patch(url, json={"driver_id": driver.json["id"]}, headers=headers)
    assert assigned.json["driver"] == {"id": driver.json["id"], "name": "Dana Whitfield"}
    [message] = db.session.query(OutboxMessage).filter_by(target_id=webhook.id).all()
    assert message.payload["data"]["driver"]["name"] == "Dana Whitfield"
    assert message.payload["data"]["previous_driver"] is None
    # Saving the same driver again is no new assignment.
    client.patch(url, json={"driver_id": driver.json["id"], "name": "Truck 42"}, headers=headers)
    assert db.session.query(OutboxMessage).count() == 1
    unknown = client.patch(url, json={"driver_id": 999999}, headers=headers)
    assert unknown.status_code == 422 and "driver_id" in unknown.json["errors"]


def test_drivers_are_listed_changed_and_deleted(client, headers):
    ids = [
        client.post("/api/v1/drivers", json={"name": name}, headers=headers).json["id"]
        for name in ("Dana", "Sam")
    ]
    listed = client.get("/api/v1/drivers?limit=1", headers=headers).json
    assert [d["name"] for d in listed["drivers"]] == ["Dana"] and listed["next_cursor"]
    clash = client.patch(f"/api/v1/drivers/{ids[1]}", json={"name": "Dana"}, headers=headers)
    assert clash.status_code == 422 and "name" in clash.json["errors"]
    renamed = client.patch(f"/api/v1/drivers/{ids[1]}", json={"name": "Sam O."}, headers=headers)
    assert renamed.json["name"] == "Sam O."
    assert client.delete(f"/api/v1/drivers/{ids[0]}", headers=headers).status_code == 204
    assert [d["id"] for d in client.get("/api/v1/drivers", headers=headers).json["drivers"]] == [
        ids[1]
    ]


def test_a_landmark_changes_shape_and_its_version_moves(client, headers):
    from accounts.models import Account

    circle = {"latitude": 41.88, "longitude": -87.63, "radius_m": 400}
    made = client.post(
        "/api/v1/landmarks", json={"name": "Yard", "circle": circle}, headers=headers
    ).json
    url = f"/api/v1/landmarks/{made['id']}"
    version = db.session.scalar(select(Account.landmarks_version))
    polygon = {"type": "Polygon", "coordinates": [OUTLINE, HOLE]}
    reshaped = client.patch(url, json={"polygon": polygon}, headers=headers).json
    assert reshaped["polygon"] == polygon and "circle" not in reshaped
    assert reshaped["name"] == "Yard"
    renamed = client.patch(url, json={"name": "Big yard"}, headers=headers).json
    assert renamed["polygon"] == polygon
    bad = client.patch(url, json={"circle": {**circle, "radius_m": -1}}, headers=headers)
    assert bad.status_code == 422
    assert client.get(url, headers=headers).json["polygon"] == polygon
    assert client.delete(url, headers=headers).status_code == 204
    db.session.expire_all()
    assert db.session.scalar(select(Account.landmarks_version)) == version + 3


@pytest.mark.parametrize("plural", ["vehicles", "drivers", "landmarks"])
def test_another_accounts_fleet_is_not_found(client, headers, plural):
    bodies = {
        "vehicles": TRUCK,
        "drivers": {"name": "Dana"},
        "landmarks": {"name": "Yard", "circle": {"latitude": 1, "longitude": 1, "radius_m": 50}},
    }
    made = client.post(f"/api/v1/{plural}", json=bodies[plural], headers=headers).json
    other = bearer(make_user("Other Co", "admin@other.example.com"))
    url = f"/api/v1/{plural}/{made['id']}"
    assert client.get(url, headers=other).status_code == 404
    assert client.patch(url, json={"name": "Mine"}, headers=other).status_code == 404
    assert client.delete(url, headers=other).status_code == 404
    assert client.get(f"/api/v1/{plural}", headers=other).json[plural] == []
    assert client.get(url, headers=headers).json["name"] == bodies[plural]["name"]


def test_members_may_read_but_not_change_the_fleet(app, client):
    admin = make_user()
    admin_headers = bearer(admin)
    vehicle = client.post("/api/v1/vehicles", json=TRUCK, headers=admin_headers).json
    member = bearer(make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin))
    url = f"/api/v1/vehicles/{vehicle['id']}"
    assert client.get(url, headers=member).status_code == 200
    assert client.patch(url, json={"name": "x"}, headers=member).status_code == 403
    assert client.delete(url, headers=member).status_code == 403
    assert client.post("/api/v1/drivers", json={"name": "x"}, headers=member).status_code == 403


def test_every_fleet_route_declares_what_it_takes_and_answers(app):
    views = [
        app.view_functions[rule.endpoint]
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("fleet_api.")
    ]
    assert len(views) == 16
    assert all(hasattr(view, "operation") for view in views)


def test_a_patch_changes_only_the_fields_it_gives(client, headers):
    vehicle = client.post("/api/v1/vehicles", json=TRUCK, headers=headers).json
    url = f"/api/v1/vehicles/{vehicle['id']}"
    changed = client.patch(url, json={"plate": "  IL 9  "}, headers=headers).json
    assert (changed["name"], changed["plate"], changed["group"]) == ("Truck 42", "IL 9", "North")
    driver = client.post(
        "/api/v1/drivers", json={"name": "Dana", "external_id": "E-1"}, headers=headers
    ).json
    url = f"/api/v1/drivers/{driver['id']}"
    changed = client.patch(url, json={"external_id": ""}, headers=headers).json
    assert (changed["name"], changed["external_id"]) == ("Dana", None)


def test_a_null_name_is_required_and_a_number_is_not_a_string(client, headers):
    response = client.post("/api/v1/vehicles", json={**TRUCK, "name": None}, headers=headers)
    assert response.json["errors"] == {"name": ["Required."]}
    response = client.post("/api/v1/drivers", json={"name": 7}, headers=headers)
    assert response.json["errors"] == {"name": ["A string."]}


def test_a_circle_names_every_bad_field_and_keeps_whole_numbers(client, headers):
    bad = {"latitude": 91, "longitude": "east", "radius_m": 400}
    response = client.post(
        "/api/v1/landmarks", json={"name": "Yard", "circle": bad}, headers=headers
    )
    assert response.json["errors"] == {
        "circle": ["latitude must be between -90 and 90.", "longitude must be a number."]
    }
    circle = {"latitude": 41.88, "longitude": -87, "radius_m": 400}
    made = client.post(
        "/api/v1/landmarks", json={"name": "Yard", "circle": circle}, headers=headers
    )
    assert made.json["circle"] == circle
    assert all(isinstance(made.json["circle"][key], int) for key in ("longitude", "radius_m"))
    assert (
        b'"radius_m":400'
        in client.get(f"/api/v1/landmarks/{made.json['id']}", headers=headers).data
    )


def test_a_landmark_change_naming_neither_shape_is_refused(client, headers):
    circle = {"latitude": 41.88, "longitude": -87.63, "radius_m": 400}
    made = client.post(
        "/api/v1/landmarks", json={"name": "Yard", "circle": circle}, headers=headers
    ).json
    url = f"/api/v1/landmarks/{made['id']}"
    refused = client.patch(url, json={"name": "Big yard", "circle": None}, headers=headers)
    assert refused.status_code == 422
    assert refused.json["errors"] == {"shape": ['Give exactly one of "circle" or "polygon".']}
    assert client.get(url, headers=headers).json == made

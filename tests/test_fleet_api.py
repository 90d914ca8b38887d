"""Vehicles and landmarks through the API: valid adds, every bad field with its
message and nothing saved, the check-digit warning, tenancy and pages."""

from __future__ import annotations

import pytest

from accounts.models import Role
from extensions import db
from fleet.landmark_index import shape_of
from fleet.models import Landmark, Vehicle
from tests.conftest import bearer, make_user
from tests.test_fleet_shapes import HOLE, OUTLINE

TRUCK = {"name": "Truck 42", "vin": "1FUJGLDR3CLBP8834", "plate": "IL 4421", "group": "North"}


@pytest.fixture
def headers(app):
    return bearer(make_user())


def test_a_vehicle_is_added_and_listed(client, headers):
    created = client.post("/api/v1/vehicles", json={**TRUCK, "vin": "1fujgldr3clbp8834"},
                          headers=headers)  # fmt: skip
    assert created.status_code == 201
    assert created.json["vin"] == "1FUJGLDR3CLBP8834" and created.json["warnings"] == []
    assert created.json["group"] == "North"
    listed = client.get("/api/v1/vehicles", headers=headers).json
    assert [v["vin"] for v in listed["vehicles"]] == ["1FUJGLDR3CLBP8834"]


def test_a_wrong_check_digit_is_saved_with_a_warning(client, headers):
    created = client.post("/api/v1/vehicles", json={**TRUCK, "vin": "1FUJGLDR5CLBP8834"},
                          headers=headers)  # fmt: skip
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
    made = client.post("/api/v1/landmarks", json={"name": "Yard", "circle": circle},
                       headers=headers)  # fmt: skip
    assert made.status_code == 201 and made.json["circle"] == circle
    polygon = {"type": "Polygon", "coordinates": [OUTLINE, HOLE]}
    made = client.post("/api/v1/landmarks", json={"name": "Depot", "polygon": polygon},
                       headers=headers)  # fmt: skip
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
        ({"name": "Both", "circle": {"latitude": 1, "longitude": 1, "radius_m": 5},
          "polygon": {"type": "Polygon", "coordinates": [OUTLINE]}}, "shape"),
        ({"name": "Neither"}, "shape"),
        ({"name": "Far", "circle": {"latitude": 1, "longitude": 1, "radius_m": 10**7}}, "circle"),
        ({"name": "Bowtie", "polygon": {"type": "Polygon",
          "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}, "polygon"),
        ({"circle": {"latitude": 1, "longitude": 1, "radius_m": 5}}, "name"),
    ],
)  # fmt: skip
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

"""A webhook's area (geo filter): over a scripted day of telemetry, each
area-filtered webhook gets exactly the events of its type whose position is
inside its landmark, circle or polygon — the unfiltered webhook of the same type
is the reference, and where each position lies is known from the script, not
computed by the code under test. Then the API's and the portal's area fields,
their bad input, and a landmark kept from deletion while an area names it."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from core.extensions import db
from fleet.models import Landmark
from tests.conftest import bearer, csrf_token, make_user
from tests.test_ingest import DEPOT, VIN, YARD, Fleet, at, position, subscribe
from webhooks.models import Webhook

# Where each scripted position lies, as the script's author placed it.
PLACES = {
    "outside": (41.95, -87.80),
    "depot": (41.8801, -87.6301),  # inside the Depot circle (200 m)
    "near_depot": (41.8850, -87.6300),  # ~556 m north of the depot's centre
    "yard": (41.871, -87.69),  # inside the Yard polygon
    "hole": (41.88, -87.69),  # inside the Yard's outline, in its hole: outside it
}
# A circle of 1 km around the depot: the depot and near_depot, nothing else.
KILOMETRE = {"circle": {"latitude": 41.88, "longitude": -87.63, "radius_m": 1000}}
WITHIN_KILOMETRE = {"depot", "near_depot"}


def place_of(data: dict) -> str:
    return next(
        name
        for name, (lat, lon) in PLACES.items()
        if (data.get("latitude"), data.get("longitude")) == (lat, lon)
    )


def at_place(seconds: float, place: str, **values) -> dict:
    latitude, longitude = PLACES[place]
    return position(seconds, latitude=latitude, longitude=longitude, **values)


def scripted_day(fleet: Fleet) -> None:
    """A vehicle's day through every kind of place: ignition, trips, speeding,
    idling, landmark crossings, temperatures, an inspection and a heartbeat."""
    readings = [{"sensor": "reefer-1", "fahrenheit": 36.5}]
    dvir = {"vin": VIN, "type": "dvir", "driver": "Dana Whitfield", "defects": []}
    heartbeat = {"vin": VIN, "type": "heartbeat"}
    fleet.post(
        at_place(0, "outside", speed=0, ignition=False),
        at_place(60, "outside", speed=0, ignition=True),
        at_place(400, "outside", speed=0),  # idle over 5 minutes
        at_place(460, "near_depot", speed=45, temperatures=readings),
        at_place(520, "depot", speed=0),
        at_place(900, "depot", speed=0, temperatures=readings),  # idle at the depot
        {**dvir, "time": at(910), "safety_status": "safe"},
        at_place(960, "near_depot", speed=75, posted_speed_mph=55),
        at_place(1020, "outside", speed=80, posted_speed_mph=55),
        at_place(1080, "yard", speed=74, posted_speed_mph=55),
        at_place(1140, "hole", speed=20),
        at_place(1200, "yard", speed=0, ignition=False),  # a trip ends in the yard
        {**heartbeat, "time": at(1260)},
        {**dvir, "time": at(1270), "safety_status": "safe"},
        at_place(1320, "yard", speed=0, ignition=True, temperatures=readings),
        at_place(1680, "yard", speed=0),  # idle in the yard
        at_place(1740, "hole", speed=30),
        at_place(1800, "outside", speed=72, posted_speed_mph=55),
        at_place(1860, "depot", speed=0, ignition=False),  # a trip ends at the depot
        {**dvir, "time": at(1920), "safety_status": "unsafe"},
        {**heartbeat, "time": at(1980)},
        at_place(2040, "near_depot", speed=0, ignition=True),
        at_place(2100, "outside", speed=10, ignition=False, temperatures=readings),
        {**heartbeat, "time": at(2160)},
        {**dvir, "time": at(2170), "safety_status": "safe"},
    )


AREAS = {
    "depot": lambda fleet: {"landmark_id": fleet.depot},
    "yard": lambda fleet: {"landmark_id": fleet.yard},
    "kilometre": lambda fleet: KILOMETRE,
    "yard polygon": lambda fleet: {"polygon": YARD},
}
# The places inside each area, by the script's construction.
INSIDE = {
    "depot": {"depot"},
    "yard": {"yard"},
    "kilometre": WITHIN_KILOMETRE,
    "yard polygon": {"yard"},
}
FILTERED_TYPES = [
    "location",
    "speed",
    "posted_speed",
    "ignition_on",
    "ignition_off",
    "trip_complete",
    "idle",
    "temperature",
    "dvir",
    "heartbeat",
    "landmark_change",
]


@pytest.fixture
def fleet(client):
    return Fleet(client)


@pytest.mark.parametrize("area", AREAS)
def test_each_area_gets_exactly_the_events_inside_it_over_a_scripted_day(fleet, area):
    filtered = {
        key: subscribe(
            fleet, key, area=AREAS[area](fleet), **({"threshold_mph": 70} if key == "speed" else {})
        ).id
        for key in FILTERED_TYPES
    }
    scripted_day(fleet)
    for key, webhook_id in filtered.items():
        every = fleet.received(key)  # the unfiltered webhook of the type
        expected = [data for data in every if place_of(data) in INSIDE[area]]
        assert fleet.received_by(webhook_id) == expected, key
    # The day is not vacuous: events of every type fall both inside and outside.
    for key in FILTERED_TYPES:
        places = {place_of(data) for data in fleet.received(key)}
        assert places & INSIDE["kilometre"] and places & INSIDE["yard"], key
        assert places - INSIDE["kilometre"] - INSIDE["yard"], key


def test_an_area_moves_with_its_landmark(fleet, client):
    webhook = subscribe(fleet, "location", area={"landmark_id": fleet.depot})
    fleet.post(at_place(0, "yard"))
    moved = client.patch(
        f"/api/v1/landmarks/{fleet.depot}",
        json={"polygon": YARD},
        headers=fleet.headers,
    )
    assert moved.status_code == 200
    fleet.post(at_place(60, "yard"), at_place(120, "hole"), at_place(180, "depot"))
    assert [place_of(d) for d in fleet.received_by(webhook.id)] == ["yard"]


def test_an_event_without_a_position_is_outside_every_area(fleet):
    webhook = subscribe(fleet, "heartbeat", area=KILOMETRE)
    fleet.post({"vin": VIN, "type": "heartbeat", "time": at(0)})  # never reported a position
    assert len(fleet.received("heartbeat")) == 1
    assert fleet.received_by(webhook.id) == []


def test_a_demo_event_goes_whatever_the_area(fleet, client):
    webhook = subscribe(fleet, "location", area={"landmark_id": fleet.yard})
    answer = client.post(f"/api/v1/webhooks/{webhook.id}/demo", headers=fleet.headers)
    assert answer.status_code in (200, 201, 202), answer.json
    assert len(fleet.received_by(webhook.id)) == 1


# The API


def create(fleet, client, **fields):
    body = {"event_type": "location", "name": "Area", "url": "https://hooks.example.com/a"}
    return client.post("/api/v1/webhooks", json={**body, **fields}, headers=fleet.headers)


@pytest.mark.parametrize("area", ["kilometre", "yard polygon", "depot"])
def test_the_api_takes_and_shows_each_kind_of_area(fleet, client, area):
    given = AREAS[area](fleet)
    created = create(fleet, client, area=given)
    assert created.status_code == 201, created.json
    shown = client.get(f"/api/v1/webhooks/{created.json['id']}", headers=fleet.headers).json
    assert shown["area"] == given
    cleared = client.patch(
        f"/api/v1/webhooks/{created.json['id']}", json={"area": None}, headers=fleet.headers
    )
    assert cleared.status_code == 200 and cleared.json["area"] is None


def test_an_unchanged_area_keeps_the_stored_numbers_only(fleet, client):
    polygon = {**YARD, "bbox": [-87.7, 41.87, -87.68, 41.89]}  # a GeoJSON foreign member
    created = create(fleet, client, area={"polygon": polygon})
    assert created.json["area"] == {"polygon": YARD}


@pytest.mark.parametrize(
    ("area", "key", "words"),
    [
        ({}, "area", "An area is"),
        ({"landmark_id": 1, "circle": KILOMETRE["circle"]}, "area", "An area is"),
        ({"everywhere": True}, "area", "An area is"),
        ({"landmark_id": "1"}, "area.landmark_id", "One of your landmarks"),
        ({"landmark_id": 999_999}, "area.landmark_id", "Not one of your landmarks"),
        ({"circle": {"latitude": 41.88, "longitude": -87.63}}, "area.circle", "A circle is"),
        (
            {"circle": {"latitude": 41.88, "longitude": -87.63, "radius_m": 0}},
            "area.circle",
            "radius_m",
        ),
        (
            {
                "polygon": {
                    "type": "Polygon",
                    "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
                }
            },
            "area.polygon",
            "not valid",
        ),
        ({"polygon": "inside the yard"}, "area.polygon", "A polygon is GeoJSON"),
        ("depot", "area", "An area is"),
    ],
)
def test_a_bad_area_is_refused_by_name_and_changes_nothing(fleet, client, area, key, words):
    before = db.session.scalars(select(Webhook.id)).all()
    answer = create(fleet, client, area=area)
    assert answer.status_code == 422
    assert key in answer.json["errors"], answer.json
    assert words in " ".join(answer.json["errors"][key])
    db.session.expire_all()
    assert db.session.scalars(select(Webhook.id)).all() == before


def test_another_accounts_landmark_is_not_an_area(fleet, client):
    user = make_user(account_name="Other", email="o@other.example.com")
    theirs = client.post(
        "/api/v1/landmarks", json={"name": "Theirs", "circle": DEPOT}, headers=bearer(user)
    ).json["id"]
    answer = create(fleet, client, area={"landmark_id": theirs})
    assert answer.status_code == 422
    assert answer.json["errors"]["area.landmark_id"] == ["Not one of your landmarks."]


def test_a_landmark_an_area_names_is_not_deleted(fleet, client):
    webhook = subscribe(fleet, "location", area={"landmark_id": fleet.depot})
    refused = client.delete(f"/api/v1/landmarks/{fleet.depot}", headers=fleet.headers)
    assert refused.status_code == 409
    assert "area of a webhook" in refused.json["detail"]
    db.session.expire_all()
    assert db.session.get(Landmark, fleet.depot) is not None
    assert db.session.get(Webhook, webhook.id).area_landmark_id == fleet.depot
    # Once the webhook looks elsewhere, the landmark goes.
    client.patch(f"/api/v1/webhooks/{webhook.id}", json={"area": None}, headers=fleet.headers)
    assert (
        client.delete(f"/api/v1/landmarks/{fleet.depot}", headers=fleet.headers).status_code == 204
    )


# The portal


@pytest.fixture
def signed_in(fleet, auth):
    auth.login("admin@acme.example.com")
    return fleet


def post_form(client, fields: dict) -> tuple[int, str]:
    page = client.get("/webhooks/new?event_type=location").data
    body = {
        "csrf_token": csrf_token(page),
        "event_type": "location",
        "url": "https://hooks.example.com/portal",
        "name": "Portal",
        "content_type": "json",
        **fields,
    }
    answer = client.post("/webhooks/new", data=body, headers={"HX-Request": "true"})
    return answer.status_code, answer.get_data(as_text=True)


def test_the_form_offers_the_accounts_landmarks_and_saves_each_kind(signed_in, client):
    page = client.get("/webhooks/new?event_type=location").get_data(as_text=True)
    area = page[page.index('name="area"') : page.index("</select>", page.index('name="area"'))]
    assert re.findall(r'<option[^>]*value="([^"]*)"', area) == [
        "",
        f"landmark:{signed_in.depot}",
        f"landmark:{signed_in.yard}",
        "circle",
        "polygon",
    ]
    for fields, stored in [
        ({"area": f"landmark:{signed_in.yard}"}, (signed_in.yard, None)),
        ({"area": "circle", "area_circle": "41.88, -87.63, 1000"}, (None, KILOMETRE)),
        ({"area": "polygon", "area_polygon": json.dumps(YARD)}, (None, {"polygon": YARD})),
        ({"area": "", "area_circle": "ignored"}, (None, None)),
    ]:
        status, _ = post_form(client, fields)
        assert status == 200
        db.session.expire_all()
        webhook = db.session.scalars(select(Webhook).order_by(Webhook.id.desc())).first()
        assert (webhook.area_landmark_id, webhook.area) == stored


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"area": "circle", "area_circle": "41.88 -87.63"}, "A circle is"),
        ({"area": "circle", "area_circle": "41.88, -87.63, 0"}, "radius_m"),
        ({"area": "polygon", "area_polygon": "{not json"}, "A polygon is GeoJSON"),
        ({"area": "landmark:999999"}, "Not one of your landmarks"),
    ],
)
def test_the_form_shows_a_bad_area_beside_its_field(signed_in, client, fields, words):
    before = db.session.scalars(select(Webhook.id)).all()
    status, page = post_form(client, fields)
    assert status == 422
    assert words in page
    assert 'aria-invalid="true"' in page
    db.session.expire_all()
    assert db.session.scalars(select(Webhook.id)).all() == before


def test_the_edit_dialog_shows_the_stored_area(signed_in, client):
    webhook = subscribe(signed_in, "location", area=KILOMETRE)
    page = client.get(f"/webhooks/{webhook.id}/edit").get_data(as_text=True)
    assert re.search(r'<option selected value="circle">|<option value="circle" selected>', page)
    assert 'value="41.88, -87.63, 1000"' in page
    detail = client.get(f"/webhooks/{webhook.id}").get_data(as_text=True)
    assert "within 1,000 m of 41.88, -87.63" in detail


def test_the_portal_refuses_to_delete_a_landmark_an_area_names(signed_in, client):
    subscribe(signed_in, "location", area={"landmark_id": signed_in.yard})
    page = client.get("/fleet/landmarks").data
    answer = client.post(
        f"/fleet/landmarks/{signed_in.yard}/delete",
        data={"csrf_token": csrf_token(page)},
        follow_redirects=True,
    )
    assert "is the area of a webhook" in answer.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Landmark, signed_in.yard) is not None

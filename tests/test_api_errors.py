"""Bad input to the API: a clear problem+json answer, and nothing changed."""

from __future__ import annotations

from accounts.models import ApiToken
from core.extensions import db
from tests.conftest import bearer, make_user


def tokens_in_db() -> int:
    return db.session.query(ApiToken).count()


def test_malformed_json_is_a_400_problem(app, client):
    headers = {**bearer(make_user()), "Content-Type": "application/json"}
    response = client.post("/api/v1/tokens", data='{"name": "x",', headers=headers)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.json["detail"] == "The body is not valid JSON."
    assert tokens_in_db() == 1


def test_a_json_body_that_is_not_an_object_is_a_400(app, client):
    headers = bearer(make_user())
    response = client.post("/api/v1/tokens", json=["name"], headers=headers)
    assert response.status_code == 400
    assert response.json["detail"] == "The body must be a JSON object."


def test_a_form_body_is_415(app, client):
    headers = bearer(make_user())
    response = client.post("/api/v1/tokens", data={"name": "x"}, headers=headers)
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"


def test_a_body_over_one_mebibyte_is_413(app, client):
    headers = {**bearer(make_user()), "Content-Type": "application/json"}
    body = '{"name": "' + "x" * (1024 * 1024) + '"}'
    response = client.post("/api/v1/tokens", data=body, headers=headers)
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert tokens_in_db() == 1


def test_invalid_fields_get_422_with_errors_by_field(app, client):
    headers = bearer(make_user())
    for body, message in [
        ({}, "A string is required."),
        ({"name": 42}, "A string is required."),
        ({"name": ""}, "Name the token after what will use it."),
        ({"name": "n" * 101}, "At most 100 characters."),
    ]:
        response = client.post("/api/v1/tokens", json=body, headers=headers)
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"
        assert response.json["errors"] == {"name": [message]}
    assert tokens_in_db() == 1


def test_an_unknown_api_route_is_a_json_404(app, client):
    headers = bearer(make_user())
    response = client.get("/api/v1/no-such-thing", headers=headers)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 404


def test_a_wrong_method_is_a_json_405_with_allow(app, client):
    headers = bearer(make_user())
    response = client.put("/api/v1/tokens", headers=headers)
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]

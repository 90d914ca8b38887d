"""The Webhook Manager in the portal: available types, the Create Webhook dialog
with its live example, validation, the live grid, edit, pause, rotate, delete."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import text

from accounts.models import Role
from core.extensions import db
from core.times import utcnow
from events.catalogue import EVENT_TYPES
from outbox.models import Target
from tests.conftest import HTMX, make_user
from tests.test_delivery import emit
from webhooks.lifecycle import create_webhook
from webhooks.models import Webhook
from webhooks.wire import ContentType, example_request

MANAGER = "/webhooks/"
WEBHOOK_GRID = "/manager/webhook/grid"  # what the webhooks grid polls


def new_webhook(account_id: int, **values) -> Webhook:
    webhook, _ = create_webhook(
        account_id,
        {
            "event_type": "speed",
            "name": "Dispatch",
            "url": "https://hooks.example.com/in",
            **values,
        },
    )
    db.session.commit()
    return webhook


def webhook_count() -> int:
    return db.session.query(Webhook).count()


def valid_form(event_type: str = "speed", **fields: str) -> dict[str, str]:
    form = {
        "event_type": event_type,
        "url": "https://hooks.example.com/fleet",
        "name": "Dispatch board",
        "content_type": "json",
    }
    setting = EVENT_TYPES[event_type].setting
    if setting is not None:
        form[setting.field] = str(setting.default)
    form.update(fields)
    return form


def field_errors(page: bytes, field: str) -> str:
    match = re.search(rf'id="{field}-errors">(.*?)</ul>', page.decode(), re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))) if match else ""


def test_every_event_type_is_offered_with_a_green_plus(admin, client):
    page = client.get(MANAGER).data.decode()
    for event_type in EVENT_TYPES.values():
        assert f">{event_type.name}</strong>" in page
        assert event_type.description in html.unescape(page)
        assert f'hx-get="/webhooks/new?event_type={event_type.key}"' in page
    assert page.count('hx-get="/webhooks/new?event_type=') == 14


def test_members_see_the_types_without_plus_buttons(app, client, auth):
    admin = make_user()
    make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    auth.login("viewer@acme.example.com")
    page = client.get(MANAGER).data.decode()
    assert "Posted Speed" in page and 'class="button add"' not in page
    assert client.get("/webhooks/new?event_type=speed").status_code == 403


def test_the_plus_opens_a_dialog_for_htmx_and_a_page_otherwise(admin, client):
    dialog = client.get("/webhooks/new?event_type=speed", headers=HTMX).data.decode()
    assert dialog.lstrip().startswith('<dialog class="modal"') and "<html" not in dialog
    assert 'aria-labelledby="dialog-title"' in dialog and "Create Speed Webhook" in dialog
    assert 'name="threshold_mph"' in dialog and 'value="70"' in dialog
    assert "Example HTTP Headers" in dialog and "Example POST body" in dialog
    page = client.get("/webhooks/new?event_type=idle").data.decode()
    assert "<html" in page and 'name="idle_minutes"' in page and 'value="5"' in page
    assert client.get("/webhooks/new?event_type=teleport").status_code == 404


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_add_webhook_saves_it_and_shows_its_secret_once(admin, client, auth, event_type):
    response = auth.post("/webhooks/new", valid_form(event_type), page=MANAGER, htmx=True)
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "webhooks-changed"
    webhook = db.session.query(Webhook).one()
    assert webhook.event_type == event_type and webhook.status == "active"
    secret = re.search(r'id="signing-secret">(whsec_[^<]+)<', response.data.decode()).group(1)
    assert secret == webhook.signing_secret
    assert f"has ID <strong>{webhook.id}</strong>" in response.data.decode()
    grid = client.get(WEBHOOK_GRID, headers=HTMX).data.decode()
    assert f'id="webhook-{webhook.id}"' in grid and "Dispatch board" in grid
    assert secret not in grid
    assert secret not in client.get(f"/webhooks/{webhook.id}").data.decode()


def test_settings_are_saved_for_the_types_that_have_them(admin, auth):
    auth.post("/webhooks/new", valid_form("posted_speed", threshold_mph="15"), page=MANAGER)
    auth.post("/webhooks/new", valid_form("idle", idle_minutes="45"), page=MANAGER)
    auth.post("/webhooks/new", valid_form("location", threshold_mph="99"), page=MANAGER)
    saved = {w.event_type: w for w in db.session.query(Webhook)}
    assert saved["posted_speed"].threshold_mph == 15
    assert saved["idle"].idle_minutes == 45
    # The form only sends the setting of the chosen type; location takes none.
    assert saved["location"].threshold_mph is None


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"url": ""}, "url", "Enter the URL that will receive the events."),
        ({"url": "ftp://hooks.example.com/x"}, "url", "Use an http:// or https:// URL."),
        ({"url": "https://10.0.0.7/x"}, "url", "10.0.0.7 is not a public address"),
        ({"url": "https://0x7f.1/x"}, "url", "127.0.0.1 is not a public address"),
        ({"url": "https://internal.example.com/x"}, "url", "resolves to a private"),
        ({"url": "https://nowhere.example.org/x"}, "url", "does not resolve"),
        ({"url": "https://localhost:8080/x"}, "url", "localhost is a local name"),
        ({"url": "https://a:b@hooks.example.com/x"}, "url", "Leave the user name and password out"),
        ({"url": "https://hooks.example.com/" + "x" * 2048}, "url", "At most 2,048 characters."),
        ({"name": ""}, "name", "Give the webhook a name."),
        ({"name": "n" * 101}, "name", "At most 100 characters."),
        ({"content_type": "xml"}, "content_type", '"json" (application/json) or "form"'),
        ({"threshold_mph": "4"}, "threshold_mph", "Between 5 and 200 mph."),
        ({"threshold_mph": "201"}, "threshold_mph", "Between 5 and 200 mph."),
        ({"threshold_mph": "fast"}, "threshold_mph", "A whole number of mph."),
        ({"threshold_mph": ""}, "threshold_mph", "A whole number of mph."),
        ({"contact_email": "ops@"}, "contact_email", "@"),
        (
            {"custom_header_name": "X Auth", "custom_header_value": "s3cret"},
            "custom_header_name",
            "A header name",
        ),
        (
            {"custom_header_name": "Webhook-Signature", "custom_header_value": "x"},
            "custom_header_name",
            "is set by Fleethook",
        ),
        (
            {"custom_header_name": "Authorization"},
            "custom_header_value",
            "Enter the header's value.",
        ),
        ({"custom_header_value": "Bearer abc"}, "custom_header_name", "A header name"),
    ],
)
def test_each_invalid_field_is_shown_next_to_it_and_nothing_is_saved(
    admin, auth, fields, field, message
):
    response = auth.post("/webhooks/new", valid_form("speed", **fields), page=MANAGER, htmx=True)
    assert response.status_code == 422
    assert message in field_errors(response.data, field)
    assert webhook_count() == 0


def test_idle_minutes_are_checked_too(admin, auth):
    response = auth.post("/webhooks/new", valid_form("idle", idle_minutes="0"), page=MANAGER)
    assert "Between 1 and 1440 minutes." in field_errors(response.data, "idle_minutes")
    assert webhook_count() == 0


def test_local_addresses_are_allowed_when_the_operator_says_so(make_app, auth):
    app = make_app(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)
    with app.app_context():
        user = make_user()
        webhook = new_webhook(user.account_id, url="http://127.0.0.1:9000/hook")
        assert webhook.url == "http://127.0.0.1:9000/hook"


def test_plain_http_is_allowed_with_a_visible_warning(admin, client, auth):
    example = client.get(
        "/webhooks/example",
        query_string={
            "event_type": "location",
            "content_type": "json",
            "url": "http://hooks.example.com/in",
        },
    )
    assert "Plain http" in example.data.decode()
    secure = client.get("/webhooks/example?event_type=location&url=https://hooks.example.com/")
    assert "Plain http" not in secure.data.decode()
    # A form sent back with an error says it once, not once per column.
    refused = auth.post(
        "/webhooks/new",
        valid_form("location", url="http://hooks.example.com/in", name=""),
        MANAGER,
        htmx=True,
    )
    assert refused.status_code == 422 and refused.data.decode().count("Plain http") == 1
    auth.post("/webhooks/new", valid_form("location", url="http://hooks.example.com/in"), MANAGER)
    assert db.session.query(Webhook).one().url == "http://hooks.example.com/in"
    # Plain http to this machine crosses no network: no warning.
    local = client.get("/webhooks/example?event_type=location&url=http://127.0.0.1:9000/in")
    assert "Plain http" not in local.data.decode()


def rendered_example(client, event_type, content_type, **params) -> tuple[dict[str, str], bytes]:
    page = client.get(
        "/webhooks/example",
        query_string={"event_type": event_type, "content_type": content_type, **params},
    ).data.decode()
    headers_text = re.search(r'id="example-headers">(.*?)</pre>', page, re.S).group(1)
    body_text = re.search(r'id="example-body">(.*?)</pre>', page, re.S).group(1)
    headers = dict(line.split(": ", 1) for line in html.unescape(headers_text).splitlines() if line)
    return headers, html.unescape(body_text).encode()


@pytest.mark.parametrize("content_type", list(ContentType))
@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_the_example_is_byte_for_byte_what_the_sender_produces(
    admin, client, event_type, content_type
):
    headers, body = rendered_example(client, event_type, content_type.value)
    expected_headers, expected_body = example_request(EVENT_TYPES[event_type], content_type)
    assert body == expected_body
    assert headers == expected_headers


def test_the_example_follows_the_setting_and_custom_header(admin, client):
    headers, body = rendered_example(
        client, "speed", "form", threshold_mph="64", custom_header_name="X-Fleet-Key"
    )
    expected_headers, expected_body = example_request(
        EVENT_TYPES["speed"], ContentType.FORM, 64, ("X-Fleet-Key", "")
    )
    assert body == expected_body and b"threshold_mph=64" in body
    assert headers == expected_headers
    assert headers["content-type"] == "application/x-www-form-urlencoded"


def test_the_dialog_updates_its_example_live(admin, client):
    dialog = client.get("/webhooks/new?event_type=speed", headers=HTMX).data.decode()
    example = re.search(r'<div id="example"(.*?)>', dialog, re.S).group(1)
    assert 'hx-get="/webhooks/example"' in example
    # Its own target: it sits in a form whose hx-target (the dialog host) it would inherit.
    assert 'hx-target="this"' in example
    assert "change from:#webhook-form" in example
    assert "[name=&#39;content_type&#39;]" in example or "[name='content_type']" in example


def test_the_grid_is_a_fragment_for_htmx_and_polls_itself(admin, client):
    new_webhook(admin.account_id)
    fragment = client.get(WEBHOOK_GRID, headers=HTMX)
    body = fragment.data.decode()
    assert body.lstrip().startswith('<div id="webhooks-grid"') and "<html" not in body
    assert 'hx-trigger="every 2s, webhooks-changed from:body"' in body
    assert 'hx-get="/manager/webhook/grid"' in body and 'hx-swap="outerHTML"' in body
    # Buttons opening dialogs must not inherit the grid's outerHTML swap.
    openers = re.findall(r'<[^>]*hx-target="#dialog-host"[^>]*>', body)
    assert len(openers) == 4 and all('hx-swap="innerHTML"' in o for o in openers)
    assert "HX-Request" in fragment.headers["Vary"]
    page = client.get(MANAGER).data.decode()
    assert "<html" in page and '<div id="webhooks-grid"' in page
    restore = client.get(WEBHOOK_GRID, headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<html" in restore.data.decode()


def test_the_grid_shows_id_status_and_counters(admin, client):
    webhook = new_webhook(admin.account_id)
    target = db.session.get(Target, webhook.id)
    target.queue_depth, target.total_messages = 3, 1250
    db.session.commit()
    row = re.search(
        rf'<tr id="webhook-{webhook.id}">(.*?)</tr>',
        client.get(WEBHOOK_GRID, headers=HTMX).data.decode(),
        re.S,
    ).group(1)
    cells = [
        " ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split())
        for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]
    assert cells[:6] == [
        str(webhook.id),
        "Dispatch https://hooks.example.com/in",
        "Speed ≥ 70 mph",
        "Active",
        "3",
        "1250",
    ]


def test_pause_and_resume_from_the_grid(admin, client, auth):
    webhook = new_webhook(admin.account_id)
    paused = auth.post(f"/manager/targets/{webhook.id}/pause", page=MANAGER, htmx=True)
    assert paused.status_code == 204
    assert "webhooks-changed" in paused.headers["HX-Trigger"]
    grid = client.get(WEBHOOK_GRID, headers=HTMX).data.decode()
    assert ">Paused</span>" in grid and f'id="resume-{webhook.id}"' in grid
    resumed = auth.post(f"/manager/targets/{webhook.id}/resume", page=MANAGER)
    assert resumed.status_code == 302
    grid = client.get(WEBHOOK_GRID, headers=HTMX).data.decode()
    assert ">Active</span>" in grid and f'id="pause-{webhook.id}"' in grid


def test_edit_changes_fields_and_keeps_the_stored_header_value(admin, client, auth):
    webhook = new_webhook(
        admin.account_id, custom_header={"name": "Authorization", "value": "Bearer s3cr3t-4242"}
    )
    dialog = client.get(f"/webhooks/{webhook.id}/edit", headers=HTMX).data.decode()
    assert "Bearer s3cr3t-4242" not in dialog and "4242" in dialog  # masked
    response = auth.post(
        f"/webhooks/{webhook.id}/edit",
        {
            "url": "https://hooks.example.com/v2",
            "name": "Dispatch v2",
            "content_type": "form",
            "threshold_mph": "80",
            "custom_header_name": "Authorization",
            "custom_header_value": "",
        },
        page=MANAGER,
        htmx=True,
    )
    assert response.status_code == 204
    assert "close-dialog" in response.headers["HX-Trigger"]
    db.session.refresh(webhook)
    assert (webhook.name, webhook.url, webhook.content_type, webhook.threshold_mph) == (
        "Dispatch v2",
        "https://hooks.example.com/v2",
        "form",
        80,
    )
    assert webhook.custom_header_value == "Bearer s3cr3t-4242"


def test_edit_can_remove_the_custom_header(admin, auth):
    webhook = new_webhook(admin.account_id, custom_header={"name": "X-Key", "value": "k-123456"})
    auth.post(
        f"/webhooks/{webhook.id}/edit",
        {
            "url": webhook.url,
            "name": webhook.name,
            "content_type": "json",
            "threshold_mph": "70",
            "custom_header_name": "X-Key",
            "remove_custom_header": "y",
        },
        page=MANAGER,
    )
    db.session.refresh(webhook)
    assert webhook.custom_header_name is None and webhook.custom_header_value is None


def test_an_invalid_edit_shows_errors_and_changes_nothing(admin, auth):
    webhook = new_webhook(admin.account_id)
    response = auth.post(
        f"/webhooks/{webhook.id}/edit",
        {"url": "https://10.1.2.3/", "name": "", "content_type": "json", "threshold_mph": "70"},
        page=MANAGER,
        htmx=True,
    )
    assert response.status_code == 422
    assert "not a public address" in field_errors(response.data, "url")
    assert "Give the webhook a name." in field_errors(response.data, "name")
    db.session.refresh(webhook)
    assert (webhook.name, webhook.url) == ("Dispatch", "https://hooks.example.com/in")


def test_rotate_secret_shows_the_new_one_and_keeps_the_old_for_a_day(admin, auth):
    webhook = new_webhook(admin.account_id)
    old = webhook.signing_secret
    response = auth.post(f"/webhooks/{webhook.id}/rotate-secret", page=MANAGER, htmx=True)
    new = re.search(r'id="signing-secret">(whsec_[^<]+)<', response.data.decode()).group(1)
    db.session.refresh(webhook)
    assert new == webhook.signing_secret != old
    assert webhook.previous_signing_secret == old
    hours = (webhook.previous_secret_expires_at - utcnow()).total_seconds() / 3600
    assert 23.9 < hours <= 24.0


def test_delete_asks_first_and_needs_the_csrf_token(admin, client, auth):
    webhook = new_webhook(admin.account_id)
    confirm = client.get(f"/manager/targets/{webhook.id}/delete", headers=HTMX).data.decode()
    assert "Delete webhook" in confirm and 'name="csrf_token"' in confirm
    assert client.post(f"/manager/targets/{webhook.id}/delete").status_code == 400
    assert webhook_count() == 1
    response = auth.post(f"/manager/targets/{webhook.id}/delete", page=MANAGER, htmx=True)
    assert response.status_code == 204
    assert webhook_count() == 0
    assert db.session.query(Target).count() == 0


def test_members_may_look_but_not_change(app, client, auth):
    admin = make_user()
    webhook = new_webhook(admin.account_id)
    make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    auth.login("viewer@acme.example.com")
    assert client.get(f"/webhooks/{webhook.id}").status_code == 200
    grid = client.get(WEBHOOK_GRID, headers=HTMX).data.decode()
    assert "Dispatch" in grid and f'id="pause-{webhook.id}"' not in grid
    for action in ["rotate-secret", "expire-previous-secret", "edit"]:
        assert auth.post(f"/webhooks/{webhook.id}/{action}", page=MANAGER).status_code == 403
    for action in ["pause", "resume", "delete"]:
        assert auth.post(f"/manager/targets/{webhook.id}/{action}", page=MANAGER).status_code == 403
    assert auth.post("/webhooks/new", valid_form(), page=MANAGER).status_code == 403
    db.session.refresh(webhook)
    assert webhook.status == "active" and webhook_count() == 1


def test_another_accounts_webhook_is_404_everywhere(admin, client, auth):
    other = make_user(account_name="Acme Haulage", email="admin@blue.example.com")
    theirs = new_webhook(other.account_id, name="Dispatch")
    for path in [
        f"/webhooks/{theirs.id}",
        f"/webhooks/{theirs.id}/edit",
        f"/manager/targets/{theirs.id}/delete",
        f"/webhooks/example?event_type=speed&webhook_id={theirs.id}",
    ]:
        assert client.get(path).status_code == 404, path
    for action in ["rotate-secret", "expire-previous-secret", "edit"]:
        assert auth.post(f"/webhooks/{theirs.id}/{action}", page=MANAGER).status_code == 404
    for action in ["pause", "resume", "delete"]:
        assert auth.post(f"/manager/targets/{theirs.id}/{action}", page=MANAGER).status_code == 404
    db.session.refresh(theirs)
    assert theirs.status == "active" and theirs.previous_signing_secret is None
    assert f'id="webhook-{theirs.id}"' not in client.get(WEBHOOK_GRID, headers=HTMX).data.decode()


def test_secrets_are_encrypted_at_rest_and_masked_on_screen(admin, client):
    webhook = new_webhook(
        admin.account_id, custom_header={"name": "Authorization", "value": "Bearer top-secret-9876"}
    )
    row = db.session.execute(text("SELECT * FROM webhook")).one()
    dump = " ".join(str(value) for value in row)
    assert webhook.signing_secret not in dump and "whsec_" not in dump
    assert "top-secret" not in dump
    page = client.get(f"/webhooks/{webhook.id}").data.decode()
    assert "Bearer top-secret-9876" not in page and "9876" in page


def test_the_form_offers_the_accounts_vehicle_groups(admin, client, auth):
    from fleet.records import create_vehicle

    for n, group in enumerate(["South", "North", "North", None]):
        create_vehicle(
            admin.account_id, {"name": f"T{n}", "vin": f"1FUJGLDR3CLBP88{n}4"[:17], "group": group}
        )
    other = make_user("Other Co", "admin@other.example.com")
    create_vehicle(other.account_id, {"name": "X", "vin": "1M8GDM9AXKP042788", "group": "West"})
    db.session.commit()
    page = client.get("/webhooks/new?event_type=location").get_data(as_text=True)
    group = page[
        page.index('name="vehicle_group"') : page.index(
            "</select>", page.index('name="vehicle_group"')
        )
    ]
    options = re.findall(r'<option[^>]*value="([^"]*)"', group)
    assert options == ["", "North", "South"]
    auth.post("/webhooks/new", valid_form("location", vehicle_group="South"), page=MANAGER)
    assert db.session.query(Webhook).one().vehicle_group == "South"


def test_the_webhook_page_pages_through_its_messages(admin, client):
    webhook = new_webhook(admin.account_id, event_type="location")
    emit(admin.account_id, 120)
    first = client.get(f"/webhooks/{webhook.id}").data.decode()
    ids = re.findall(r"<code>(msg_[0-9a-f]+)</code>", first)
    assert len(ids) == 50 and "Older messages" in first and "Newest" not in first
    older = re.search(r'href="(/webhooks/\d+\?before=\d+)">Older messages', first).group(1)
    second = client.get(html.unescape(older)).data.decode()
    second_ids = re.findall(r"<code>(msg_[0-9a-f]+)</code>", second)
    assert len(second_ids) == 50 and not set(ids) & set(second_ids) and "Newest" in second
    third = client.get(
        html.unescape(re.search(r'href="([^"]+)">Older messages', second).group(1))
    ).data.decode()
    third_ids = re.findall(r"<code>(msg_[0-9a-f]+)</code>", third)
    assert len(third_ids) == 20 and "Older messages" not in third
    assert len(set(ids + second_ids + third_ids)) == 120
    # The status filter carries over; a page number that is not one shows the first page.
    assert "status=pending" in client.get(f"/webhooks/{webhook.id}?status=pending").data.decode()
    assert client.get(f"/webhooks/{webhook.id}?before=abc").status_code == 200


def test_the_webhook_page_pauses_resumes_and_offers_demo(admin, client, auth):
    webhook = new_webhook(admin.account_id)
    page = client.get(f"/webhooks/{webhook.id}").data.decode()
    assert f'hx-post="/webhooks/{webhook.id}/demo"' in page and '<div id="dialog-host">' in page
    paused = auth.post(
        f"/manager/targets/{webhook.id}/pause",
        page=f"/webhooks/{webhook.id}",
        data={"back": "detail"},
    )
    assert paused.status_code == 302 and paused.location.endswith(f"/webhooks/{webhook.id}")
    assert db.session.get(Webhook, webhook.id).status == "paused"
    page = client.get(f"/webhooks/{webhook.id}").data.decode()
    assert ">Resume</button>" in page and f"Webhook {webhook.id} paused." in page
    resumed = auth.post(
        f"/manager/targets/{webhook.id}/resume",
        page=f"/webhooks/{webhook.id}",
        data={"back": "detail"},
    )
    assert resumed.location.endswith(f"/webhooks/{webhook.id}")
    assert db.session.get(Webhook, webhook.id).status == "active"


def test_threshold_fields_are_number_fields_with_their_range(admin, client):
    speed = client.get("/webhooks/new?event_type=speed", headers=HTMX).data.decode()
    field = re.search(r'<input[^>]*name="threshold_mph"[^>]*>', speed).group(0)
    assert 'type="number"' in field and 'min="' in field and 'max="' in field
    idle = client.get("/webhooks/new?event_type=idle", headers=HTMX).data.decode()
    assert 'type="number"' in re.search(r'<input[^>]*name="idle_minutes"[^>]*>', idle).group(0)

"""The portal's usability pieces: relative times with the exact time on hover,
the per-minute delivery activity (recorded by real deliveries, charted in the
grids without reading the outbox), the last delivery and last error, empty states
that say what to do next, a label on every form field and a name on every
icon-only button, and the loading-indicator wiring of forms and buttons."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from markupsafe import Markup
from sqlalchemy import delete, event, insert, select

from accounts.audit import AuditEvent
from accounts.models import Role
from core.extensions import db
from core.portal import describe, relative_time
from core.times import utcnow
from events.catalogue import EVENT_TYPES, EXAMPLE_VEHICLE, DetectedEvent
from fleet import records
from integrations.models import Integration
from outbox.activity import (
    HEIGHT,
    KEPT_MINUTES,
    QUIET,
    WIDTH,
    Activity,
    account_activity,
    minute_of,
    prune_activity,
    record_activity,
    step_area,
    summarise,
)
from outbox.drain import drain_target
from outbox.fanout import account_targets, fan_out
from outbox.models import OutboxMessage, Target, TargetActivity
from tests.conftest import HTMX, make_user
from webhooks.lifecycle import create_webhook
from webhooks.models import Webhook

pytestmark = pytest.mark.app_config(
    FLEETHOOK_ALLOW_LOCAL_NETWORK=True, FLEETHOOK_CONNECT_TIMEOUT=1, FLEETHOOK_READ_TIMEOUT=1
)

MANAGER = "/webhooks/"
WEBHOOK_GRID = "/manager/webhook/grid"  # what the webhooks grid polls
NOW = datetime(2026, 11, 30, 3, 12, 5, tzinfo=UTC)


@pytest.fixture
def member(app, auth):
    admin = make_user(account_name="Acme Haulage")
    user = make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    auth.login("viewer@acme.example.com")
    return user


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def new_webhook(account_id: int, url: str = "https://hooks.example.com/in", **values) -> Webhook:
    webhook, _ = create_webhook(
        account_id,
        {"event_type": "location", "name": "Dispatch", "url": url, **values},
    )
    db.session.commit()
    return webhook


def emit(account_id: int, count: int) -> None:
    vehicle = replace(EXAMPLE_VEHICLE, fix_time=utcnow())
    events = [DetectedEvent(EVENT_TYPES["location"], utcnow(), vehicle) for _ in range(count)]
    fan_out(events, account_targets(account_id))
    db.session.commit()


def grid_row(page: str, row_id: str) -> str:
    match = re.search(rf'<tr id="{row_id}">(.*?)</tr>', page, re.S)
    assert match, f"no row {row_id}"
    return match.group(1)


def cells(row: str) -> list[str]:
    return [text_of(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


# --- relative times -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds_ago", "words"),
    [
        (0, "just now"),
        (59.999, "just now"),
        (60, "1 min ago"),
        (119, "1 min ago"),
        (120, "2 min ago"),
        (3599, "59 min ago"),
        (3600, "1 h ago"),
        (3 * 3600 + 59, "3 h ago"),
        (86399, "23 h ago"),
        (86400, "yesterday"),
        (2 * 86400 - 1, "yesterday"),
        (2 * 86400, "2026-11-28"),
        (400 * 86400, "2025-10-26"),
        # Ahead of now: a little is clock skew; more is a time to come.
        (-59, "just now"),
        (-60, "in 1 min"),
        (-7200, "in 2 h"),
        (-86400, "tomorrow"),
        (-2 * 86400, "2026-12-02"),
    ],
)
def test_relative_time_in_words_at_each_boundary(seconds_ago, words):
    assert describe(NOW - timedelta(seconds=seconds_ago), NOW) == words


def test_relative_time_is_a_time_element_with_the_exact_utc_time_on_hover():
    moment = NOW - timedelta(minutes=2, seconds=30)
    assert relative_time(moment, now=NOW) == Markup(
        '<time datetime="2026-11-30T03:09:35Z" title="2026-11-30 03:09:35 UTC">2 min ago</time>'
    )
    # Any zone in, UTC out.
    eastern = moment.astimezone(timezone(timedelta(hours=-5)))
    assert relative_time(eastern, now=NOW) == relative_time(moment, now=NOW)


def test_relative_time_reads_the_rfc3339_strings_stored_in_reports():
    shown = relative_time("2026-11-30T05:12:05+02:00", now=NOW)
    assert shown == Markup(
        '<time datetime="2026-11-30T03:12:05Z" title="2026-11-30 03:12:05 UTC">just now</time>'
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        ("", "—"),
        ("not a time", "not a time"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("2026-11-30T03:12:05", "2026-11-30T03:12:05"),  # no offset: not a time we trust
    ],
)
def test_relative_time_shows_what_is_no_time_as_plain_escaped_text(value, shown):
    assert str(relative_time(value, now=NOW)) == shown


def test_relative_time_says_what_nothing_means_where_asked():
    assert str(relative_time(None, empty="never")) == "never"


# --- the activity counters ------------------------------------------------------------


def test_activity_counters_add_up_per_minute_and_are_pruned(app):
    webhook = new_webhook(make_user().account_id)
    record_activity(webhook.id, NOW, 3, 1)
    record_activity(webhook.id, NOW + timedelta(seconds=20), 2, 0)  # same minute
    record_activity(webhook.id, NOW - timedelta(minutes=5), 1, 1)
    record_activity(webhook.id, NOW - timedelta(minutes=KEPT_MINUTES + 1), 9, 9)
    record_activity(webhook.id, NOW, 0, 0)  # nothing: no row
    db.session.commit()
    rows = db.session.execute(
        select(TargetActivity.minute, TargetActivity.delivered, TargetActivity.failed).order_by(
            TargetActivity.minute
        )
    ).all()
    assert [(r.delivered, r.failed) for r in rows] == [(9, 9), (1, 1), (5, 1)]
    assert rows[-1].minute == minute_of(NOW)
    recent = account_activity(webhook.account_id, NOW)
    assert (recent[webhook.id].delivered, recent[webhook.id].failed) == (6, 2)
    assert recent[12345] is QUIET
    assert prune_activity(NOW) == 1
    assert db.session.query(TargetActivity).count() == 2


def test_activity_is_summed_over_the_last_hour_only():
    last = minute_of(NOW)
    activity = summarise({last: (4, 0), last - 59: (1, 1), last - 60: (50, 50)}, last)
    assert (activity.delivered, activity.failed, activity.peak) == (5, 1, 4)
    assert activity.description == "Last hour: 5 delivered, 1 failed (83 % success)"
    assert summarise({last - 60: (5, 0)}, last) is QUIET
    assert QUIET.description == "Last hour: no deliveries"


@pytest.mark.parametrize(
    ("delivered", "failed", "percent"),
    [(124, 3, 98), (999, 1, 99), (1, 999, 1), (0, 5, 0), (5, 0, 100), (1, 1, 50)],
)
def test_the_success_rate_never_rounds_a_failure_or_a_delivery_away(delivered, failed, percent):
    activity = Activity(delivered, failed, "", "", 1)
    assert activity.success_percent == percent


def test_the_chart_is_a_step_area_scaled_to_the_busiest_minute():
    values = [0] * 60
    values[0], values[1], values[59] = 100, 100, 1
    path = step_area(values, 100)
    # Two minutes at full height, then nothing, then a sliver (never rounded away).
    assert path == f"M0 {HEIGHT}H0V0H4V{HEIGHT}H118V{HEIGHT - 1}H{WIDTH}V{HEIGHT}Z"
    assert step_area([0] * 60, 0) == ""


# --- recorded by real deliveries, shown in the grid --------------------------------------


def test_a_real_delivery_records_activity_and_the_grid_charts_it(admin, client, receiver):
    webhook = new_webhook(admin.account_id, receiver.url("/ok"))
    emit(admin.account_id, 3)
    drain_target(webhook.id)
    assert len(receiver.requests_to("/ok")) == 3
    row = db.session.scalars(select(TargetActivity)).one()
    assert (row.target_id, row.delivered, row.failed) == (webhook.id, 3, 0)
    target = db.session.get(Target, webhook.id)
    assert target.last_delivered_at is not None and target.last_error is None

    grid = client.get(WEBHOOK_GRID, headers=HTMX).data.decode()
    row_html = grid_row(grid, f"webhook-{webhook.id}")
    assert re.search(
        rf'<svg class="activity activity-small"[^>]*role="img"[^>]*'
        rf'aria-labelledby="activity-small-{webhook.id}"',
        row_html,
    )
    assert (
        f'<title id="activity-small-{webhook.id}">'
        "Last hour: 3 delivered, 0 failed (100 % success)</title>"
    ) in row_html
    assert 'class="activity-attempts" d="M0 40H' in row_html
    assert '<span class="activity-rate" aria-hidden="true">100 %</span>' in row_html
    assert cells(row_html)[7:9] == ["just now", "none"]
    assert " style=" not in grid

    page = client.get(f"/webhooks/{webhook.id}").data.decode()
    assert 'class="activity activity-large"' in page
    assert "Last hour: 3 delivered, 0 failed (100 % success) · busiest minute: 3 attempts." in (
        text_of(page)
    )


def test_a_failed_delivery_shows_its_error_and_when(admin, client, receiver):
    webhook = new_webhook(admin.account_id, receiver.url("/status/500"))
    emit(admin.account_id, 2)
    drain_target(webhook.id)  # the head fails and holds back the second
    row = db.session.scalars(select(TargetActivity)).one()
    assert (row.delivered, row.failed) == (0, 1)
    target = db.session.get(Target, webhook.id)
    assert target.last_error == "HTTP 500" and target.last_error_at is not None

    grid = client.get(WEBHOOK_GRID, headers=HTMX).data.decode()
    row_html = grid_row(grid, f"webhook-{webhook.id}")
    assert "Last hour: 0 delivered, 1 failed (0 % success)</title>" in row_html
    assert 'class="activity-failed"' in row_html
    assert '<span class="last-error" title="HTTP 500">HTTP 500</span>' in row_html
    assert '<span class="activity-rate" aria-hidden="true">0 %</span>' in row_html
    assert cells(row_html)[7:9] == ["never", "HTTP 500 just now"]


def test_the_last_error_stays_after_recovery_and_is_truncated_on_screen_not_in_the_title(
    admin, client
):
    webhook = new_webhook(admin.account_id)
    long_error = "connection reset by the receiver " * 12
    target = db.session.get(Target, webhook.id)
    target.last_error, target.last_error_at = long_error.strip()[:500], utcnow()
    target.last_delivered_at = utcnow() - timedelta(hours=3)
    db.session.commit()
    row_html = grid_row(
        client.get(WEBHOOK_GRID, headers=HTMX).data.decode(), f"webhook-{webhook.id}"
    )
    assert f'title="{long_error.strip()[:500]}"' in row_html  # the whole text on hover
    assert 'class="last-error"' in row_html  # cut to one line by the CSS
    assert cells(row_html)[7] == "3 h ago"


def test_integrations_show_their_last_delivery_error_and_activity(admin, client):
    integration = Integration(
        account_id=admin.account_id, provider="fleetio", options={}, credentials="{}"
    )
    db.session.add(integration)
    db.session.commit()
    integration.last_delivered_at = utcnow() - timedelta(minutes=5)
    integration.last_error, integration.last_error_at = "Fleetio answered 422: bad meter", utcnow()
    record_activity(integration.id, utcnow(), 7, 1)
    db.session.commit()
    grid = client.get("/manager/integration/grid", headers=HTMX).data.decode()
    row_html = grid_row(grid, f"integration-{integration.id}")
    assert "Last hour: 7 delivered, 1 failed (88 % success)</title>" in row_html
    assert '<span class="activity-rate" aria-hidden="true">88 %</span>' in row_html
    assert cells(row_html)[7:9] == ["5 min ago", "Fleetio answered 422: bad meter just now"]
    page = client.get(f"/integrations/{integration.id}").data.decode()
    assert 'class="activity activity-large"' in page and "Fleetio answered 422" in page


# --- the grid stays cheap -------------------------------------------------------------------


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn, _cursor, statement, _params, _context, _many) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", note)


def add_delivered_messages(target_ids: list[int], first: int, count: int) -> None:
    now = utcnow()
    payload = {"type": "location", "data": {}}
    rows = [
        {
            "target_id": target_ids[n % len(target_ids)],
            "sequence": n + 1,
            "message_id": f"msg_ux{n:012d}",
            "event_type": "location",
            "payload": payload,
            "is_test": False,
            "status": "delivered",
            "attempts": 1,
            "next_attempt_at": now,
            "created_at": now,
            "retain_from": now,
            "finished_at": now,
        }
        for n in range(first, first + count)
    ]
    db.session.execute(insert(OutboxMessage), rows)
    db.session.commit()


def grid_statements(client) -> list[str]:
    with statements() as seen:
        assert client.get(WEBHOOK_GRID, headers=HTMX).status_code == 200
    return seen


def test_the_grid_fragment_reads_no_messages_however_many_there_are(admin, client):
    hooks = [new_webhook(admin.account_id, name=f"Hook {n}").id for n in range(3)]
    for webhook_id in hooks:
        record_activity(webhook_id, utcnow(), 2, 1)
    db.session.commit()
    add_delivered_messages(hooks, 0, 30)
    grid_statements(client)  # warm up
    few = grid_statements(client)
    add_delivered_messages(hooks, 30, 3000)
    many = grid_statements(client)
    assert len(many) == len(few)
    for statement in many:
        assert "outbox_message" not in statement and "delivery_attempt" not in statement
    # Nor does it grow with the webhooks: no query per row.
    hooks += [new_webhook(admin.account_id, name=f"More {n}").id for n in range(5)]
    for webhook_id in hooks:
        record_activity(webhook_id, utcnow(), 1, 0)
    db.session.commit()
    assert len(grid_statements(client)) == len(few)
    activity_reads = [s for s in many if "target_activity" in s]
    assert len(activity_reads) == 1


# --- empty states ----------------------------------------------------------------------------


EMPTY = {
    # path: (what an admin reads, what a member reads)
    "/webhooks/": (
        "No webhooks yet. Add one with the green + next to an event type above",
        "No webhooks yet. An admin of the account can add them",
    ),
    "/manager/integration/grid": (
        "No integrations yet. Connect one with the green + next to a provider above",
        "No integrations yet. An admin of the account can connect them",
    ),
    "/fleet/vehicles": (
        "No vehicles yet. Add one with “Add vehicle”, or many at once with “Import CSV”",
        "No vehicles yet. An admin of the account can add them.",
    ),
    "/fleet/drivers": (
        "No drivers yet. Add one with “Add driver”",
        "No drivers yet. An admin of the account can add them.",
    ),
    "/fleet/landmarks": (
        "No landmarks yet. Add one with “Add landmark”",
        "No landmarks yet. An admin of the account can add them.",
    ),
    "/account/tokens": (
        "No tokens yet. Create one above for each system that will call the API.",
        "No tokens yet. Ask an admin of the account for one.",
    ),
}


@pytest.mark.parametrize("path", list(EMPTY))
def test_empty_lists_tell_an_admin_what_to_do_next(admin, client, path):
    assert EMPTY[path][0] in text_of(client.get(path, headers=HTMX).data.decode())


@pytest.mark.parametrize("path", list(EMPTY))
def test_empty_lists_tell_a_member_who_can_act(member, client, path):
    page = text_of(client.get(path, headers=HTMX).data.decode())
    assert EMPTY[path][1] in page and EMPTY[path][0] not in page


def test_users_audit_feed_and_messages_say_what_comes_next(admin, client):
    users = text_of(client.get("/account/users").data.decode())
    assert "No other users yet. Add a colleague below" in users
    # An account whose log is empty (made before the log was kept).
    db.session.execute(delete(AuditEvent))
    db.session.commit()
    audit = text_of(client.get("/account/audit").data.decode())
    assert "No changes recorded yet. Every change to the account's webhooks" in audit
    webhook = new_webhook(admin.account_id)
    feed = text_of(client.get(f"/webhooks/{webhook.id}/feed", headers=HTMX).data.decode())
    assert "No messages yet. The test event appears here within a few seconds" in feed
    detail = text_of(client.get(f"/webhooks/{webhook.id}").data.decode())
    assert "No messages yet. They appear here as vehicles report Location events; " in detail
    assert "use Demo on this webhook in the Webhook Manager" in detail
    filtered = text_of(client.get(f"/webhooks/{webhook.id}?status=dead").data.decode())
    assert "No dead messages. Show all messages ." in filtered


def test_a_member_is_not_told_to_use_demo(app, client, auth):
    admin = make_user()
    make_user(email="viewer@acme.example.com", role=Role.MEMBER, admin=admin)
    webhook = new_webhook(admin.account_id)
    auth.login("viewer@acme.example.com")
    detail = text_of(client.get(f"/webhooks/{webhook.id}").data.decode())
    assert "No messages yet. They appear here as vehicles report Location events." in detail
    assert "Demo" not in detail
    users = text_of(client.get("/account/users").data.decode())
    assert "No other users yet" not in users  # there are two


# --- labels and names ---------------------------------------------------------------------


class Controls(HTMLParser):
    """Every form control of a page with the name a screen reader would give it,
    and every button or button-styled link with its text and aria-label."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.controls: list[dict[str, str | None]] = []
        self.label_for: dict[str, str] = {}
        self.labels: list[dict] = []
        self.buttons: list[dict] = []
        self.open_buttons: list[dict] = []
        self.ids: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "label":
            self.labels.append({"for": found.get("for"), "text": [], "controls": []})
        elif tag in ("input", "select", "textarea"):
            if tag == "input" and found.get("type") in ("hidden", "submit", "button"):
                return
            if found.get("form") == "no-form":
                return
            self.controls.append({**found, "tag": tag, "wrapped": None})
            for label in self.labels:
                label["controls"].append(len(self.controls) - 1)
        elif tag == "button" or (tag == "a" and "button" in (found.get("class") or "").split()):
            entry = {**found, "tag": tag, "text": []}
            self.buttons.append(entry)
            self.open_buttons.append(entry)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self.labels:
            label = self.labels.pop()
            text = " ".join("".join(label["text"]).split())
            if label["for"]:
                self.label_for[label["for"]] = text
            for index in label["controls"]:
                self.controls[index]["wrapped"] = text
        elif tag in ("button", "a") and self.open_buttons and self.open_buttons[-1]["tag"] == tag:
            self.open_buttons.pop()

    def handle_data(self, data: str) -> None:
        for label in self.labels:
            label["text"].append(data)
        for button in self.open_buttons:
            button["text"].append(data)

    def unlabelled(self) -> list[str]:
        problems = []
        for control in self.controls:
            name = (
                control.get("aria-label")
                or control.get("aria-labelledby")
                or self.label_for.get(control.get("id") or "")
                or control.get("wrapped")
            )
            if not (name or "").strip():
                problems.append(f"<{control['tag']} name={control.get('name')!r}>")
        return problems

    def nameless_buttons(self) -> list[str]:
        problems = []
        for button in self.buttons:
            text = "".join(button["text"]).strip()
            if not any(char.isalnum() for char in text) and not button.get("aria-label"):
                problems.append(f"<{button['tag']} id={button.get('id')!r}>{text}")
        return problems


def form_pages(account_id: int) -> list[str]:
    """Every page and dialog with a form, for an account with one of everything."""
    webhook = new_webhook(
        account_id, custom_header={"name": "Authorization", "value": "Bearer abc12345"}
    )
    vehicle, _ = records.create_vehicle(
        account_id, {"name": "Truck 42", "vin": "1FUJGLDR3CLBP8834", "plate": "", "group": ""}
    )
    driver = records.create_driver(account_id, {"name": "Dana", "external_id": ""})
    landmark = records.create_landmark(
        account_id,
        {"name": "Yard", "circle": {"latitude": 41.8, "longitude": -87.6, "radius_m": 90}},
    )
    titan = Integration(
        account_id=account_id, provider="servicetitan", options={}, credentials="{}"
    )
    db.session.add(titan)
    db.session.commit()
    return [
        *[f"/webhooks/new?event_type={key}" for key in EVENT_TYPES],
        f"/webhooks/{webhook.id}/edit",
        f"/manager/targets/{webhook.id}/delete",
        f"/webhooks/{webhook.id}",
        "/webhooks/",
        *[
            f"/integrations/new?provider={key}"
            for key in ("servicemax", "servicetitan", "fleetio", "asana", "agilefleet")
        ],
        f"/integrations/{titan.id}/release",
        f"/manager/targets/{titan.id}/delete",
        "/fleet/vehicles/new",
        f"/fleet/vehicles/{vehicle.id}/edit",
        "/fleet/vehicles/import",
        "/fleet/drivers/new",
        f"/fleet/drivers/{driver.id}/edit",
        "/fleet/landmarks/new",
        f"/fleet/landmarks/{landmark.id}/edit",
        f"/fleet/landmarks/{landmark.id}/delete",
        "/account/tokens",
        "/account/users",
    ]


@pytest.mark.parametrize("htmx", [True, False], ids=["dialog", "page"])
def test_every_form_field_has_a_label_and_every_icon_button_a_name(admin, client, htmx):
    checked = 0
    for path in form_pages(admin.account_id):
        response = client.get(path, headers=HTMX if htmx else {})
        assert response.status_code == 200, path
        parser = Controls()
        parser.feed(response.data.decode())
        assert parser.unlabelled() == [], path
        assert parser.nameless_buttons() == [], path
        checked += len(parser.controls)
    assert checked > 100


def test_the_login_form_is_labelled(app, client):
    parser = Controls()
    parser.feed(client.get("/login").data.decode())
    assert len(parser.controls) == 2 and parser.unlabelled() == []


def test_the_green_plus_and_the_close_button_are_named(admin, client):
    page = client.get(MANAGER).data.decode()
    pluses = re.findall(r'<a class="button add"[^>]*>\+</a>', page, re.S)
    assert len(pluses) == len(EVENT_TYPES) + 5
    assert all('aria-label="' in plus for plus in pluses)
    dialog = client.get("/webhooks/new?event_type=speed", headers=HTMX).data.decode()
    assert '<button type="button" class="icon" data-close-dialog aria-label="Close">×</button>' in (
        dialog
    )


# --- loading indicators --------------------------------------------------------------------


def test_htmx_forms_disable_their_submit_button_while_they_post(admin, client):
    for path in form_pages(admin.account_id):
        dialog = client.get(path, headers=HTMX).data.decode()
        for form in re.findall(r"<form\b[^>]*>", dialog):
            if "hx-post" in form:
                assert "hx-disabled-elt=\"find button[type='submit']\"" in html.unescape(form), path


def test_grid_buttons_disable_themselves_and_polling_shows_no_indicator(admin, client):
    webhook = new_webhook(admin.account_id)
    grid = client.get(WEBHOOK_GRID, headers=HTMX).data.decode()
    for action in ("pause", "demo", "rotate"):
        button = re.search(rf'<button[^>]*id="{action}-{webhook.id}"[^>]*>', grid, re.S).group(0)
        assert 'hx-disabled-elt="this"' in button
    opening = re.search(r'<div id="webhooks-grid"[^>]*>', grid, re.S).group(0)
    # The poll itself carries no indicator or disabling of its own.
    assert "hx-indicator" not in opening and "hx-disabled-elt" not in opening
    with open(client.application.static_folder + "/fleethook.css", encoding="utf-8") as css:
        rules = css.read()
    # No rule styles a polling element (or all of .htmx-request) while it polls.
    assert not re.search(r"(^|[\s,}])\.htmx-request\s*[{,]", rules, re.M)
    assert "#webhooks-grid.htmx-request" not in rules and "[hx-trigger" not in rules

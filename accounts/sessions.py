"""Portal sign-in sessions, kept server-side so that they can end.

Flask's session is a signed cookie: on its own, a copy taken before logout works
for ever after it. So every login opens a session record in Redis under a random
id that the cookie carries; a request is signed in only while that record lives.
Logging out deletes it (the copied cookie is refused from then on), and Redis
expires it after FLEETHOOK_SESSION_IDLE_TIMEOUT without a person's request, and
at FLEETHOOK_SESSION_MAX_AGE after login whatever happens.

The live grids poll every second or two: that is the page at work, not a person,
so polls do not count as activity — otherwise a tab left open on an unattended
screen would keep its session until the absolute limit. A poll is recognised by
the house rule for polling (STYLE.md): an htmx GET whose element replaces itself,
so htmx names the same element as trigger and target.

Records are in Redis, beside the other short-lived state: flushing Redis logs
everyone out, which fails safe. API requests use bearer tokens and never reach
this module."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import cast

from flask import current_app, request, session

from core.extensions import redis_client, redis_key

# The Flask-session field that carries the session's id.
SESSION_ID_FIELD = "_fleethook_session"


def _record_key(session_id: str) -> str:
    # Only a digest: someone reading Redis cannot take the ids over.
    return redis_key("portal-session", hashlib.sha256(session_id.encode()).hexdigest())


def _seconds_left(started_at: float) -> float:
    """How long the record may live from now: the idle timeout, cut to what is left
    of the absolute one."""
    config = current_app.config
    idle = config["FLEETHOOK_SESSION_IDLE_TIMEOUT"].total_seconds()
    ends_at = started_at + config["FLEETHOOK_SESSION_MAX_AGE"].total_seconds()
    return min(idle, ends_at - time.time())


def create_session_record(user_id: int) -> str:
    """Record a new session of `user_id`; its id, for the cookie."""
    session_id = secrets.token_urlsafe(32)
    started_at = time.time()
    key = _record_key(session_id)
    pipe = redis_client().pipeline()
    pipe.hset(key, mapping={"user_id": str(user_id), "started_at": repr(started_at)})
    pipe.pexpire(key, int(_seconds_left(started_at) * 1000))
    pipe.execute()
    return session_id


def open_session(user_id: int) -> None:
    """Start a session of `user_id` and put its id in the cookie. Call it with a
    cleared Flask session (login), so no value set before login survives it."""
    session[SESSION_ID_FIELD] = create_session_record(user_id)


def is_poll() -> bool:
    """An htmx GET of an element that replaces itself: a live grid polling."""
    trigger = request.headers.get("HX-Trigger")
    return (
        request.method == "GET"
        and request.headers.get("HX-Request") == "true"
        and bool(trigger)
        and trigger == request.headers.get("HX-Target")
    )


def session_is_live(user_id: str) -> bool:
    """Whether this request's cookie names a live session of `user_id`; a request
    of a person (not a poll) restarts its idle timeout."""
    session_id = session.get(SESSION_ID_FIELD)
    if not isinstance(session_id, str):
        return False
    key = _record_key(session_id)
    record = cast(dict[bytes, bytes], redis_client().hgetall(key))
    if record.get(b"user_id", b"").decode() != user_id:
        return False
    seconds_left = _seconds_left(float(record[b"started_at"]))
    if seconds_left <= 0:
        # Redis expires the record by then; this holds to the millisecond.
        redis_client().delete(key)
        return False
    if not is_poll():
        redis_client().pexpire(key, int(seconds_left * 1000))
    return True


def close_session() -> None:
    """End this request's session: its record goes, so no copy of the cookie works."""
    session_id = session.get(SESSION_ID_FIELD)
    if isinstance(session_id, str):
        redis_client().delete(_record_key(session_id))
    session.clear()

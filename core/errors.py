"""Errors and how they reach people: the `ValidationError` domain code raises, the
`application/problem+json` body of the API, and the error pages of the portal."""

from __future__ import annotations

from typing import Any, cast

import redis
from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from core.extensions import login_manager

API_PREFIX = "/api/"


class ValidationError(Exception):
    """Input that breaks a rule; `errors` maps each field to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()))
        self.errors = errors


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An RFC 9457 problem response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_problem(errors: dict[str, list[str]]) -> Response:
    return problem(422, "Unprocessable Content", "Some fields are invalid.", errors)


def _wants_json() -> bool:
    return request.path.startswith(API_PREFIX)


def _handle_http_error(error: HTTPException) -> Response | tuple[str, int]:
    if error.response is not None:  # the raiser built the whole answer
        return cast(Response, error.response)
    status = error.code or 500
    # Keep the headers that tell a client what to do next; the body is ours.
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() in ("retry-after", "www-authenticate", "allow")
    }
    if _wants_json():
        return problem(status, error.name, error.description, headers=headers)
    template = f"errors/{status}.html" if status in (404, 429, 500, 503) else "errors/http.html"
    return Response(render_template(template, error=error), status, headers)


def _handle_csrf_error(error: CSRFError) -> tuple[str, int]:
    return render_template("errors/csrf.html", reason=error.description), 400


def _handle_unavailable(error: Exception) -> Response | tuple[str, int]:
    # The database or Redis is down: say so plainly and let the next request retry.
    current_app.logger.warning("backing service unavailable: %s", error.__class__.__name__)
    # The page's menu would load the signed-in user from the database that just
    # failed, and that second error would escape as a bare 500: render this page as
    # for a visitor (the session cookie is untouched, the next page is signed in).
    login_manager._update_request_context_with_user()
    return _handle_http_error(
        ServiceUnavailable("A backing service is unavailable. Please try again shortly.")
    )


def _handle_unexpected(error: Exception) -> Response | tuple[str, int]:
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return _handle_http_error(InternalServerError())


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(CSRFError, _handle_csrf_error)
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(OperationalError, _handle_unavailable)
    app.register_error_handler(redis.exceptions.ConnectionError, _handle_unavailable)
    app.register_error_handler(redis.exceptions.TimeoutError, _handle_unavailable)
    if not app.testing:
        app.register_error_handler(Exception, _handle_unexpected)

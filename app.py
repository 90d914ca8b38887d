"""The application factory: `create_app()` reads the configuration, binds the
extensions and registers blueprints, error handlers and commands. Nothing runs on
import; WSGI servers call `app:create_app()`."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from core.config import load_config
from core.database import MAX_ID
from core.encryption import init_encryption, mask
from core.errors import register_error_handlers
from core.extensions import init_extensions
from core.security import init_security
from core.times import utcnow

HTMX_STATIC_PATH = "vendor/htmx.min.js"


def numbers_up_to(limit: int) -> str:
    """A regular expression of the decimal numbers from 0 to `limit`."""
    digits = str(limit)
    options = [rf"\d{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for index, digit in enumerate(digits):
        if digit != "0":
            rest = len(digits) - index - 1
            options.append(digits[:index] + f"[0-{int(digit) - 1}]" + rf"\d{{{rest}}}")
    return "(?:" + "|".join([*options, digits]) + ")"


class IdConverter(IntegerConverter):
    """`<int:…>` as Werkzeug's, but only up to the largest id a row can have: a
    larger number in a URL is a 404, not a query the database cannot run. (By the
    regex: a `max` would make Werkzeug answer 405 to some methods instead.)"""

    regex = numbers_up_to(MAX_ID)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment, then `test_config` on top (tests only)."""
    app = Flask(__name__, instance_relative_config=True)
    app.url_map.converters["int"] = IdConverter
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(load_config(os.environ, app.instance_path))
    if test_config:
        app.config.update(test_config)

    _configure_logging(app)
    if app.config["FLEETHOOK_TRUSTED_PROXIES"]:
        proxies = app.config["FLEETHOOK_TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]

    init_extensions(app)
    init_encryption(app)
    init_security(app)
    register_error_handlers(app)
    _register_with_the_outbox()
    register_blueprints(app)
    _register_commands(app)
    _register_template_helpers(app)
    _warn_if_htmx_missing(app)
    return app


def _register_with_the_outbox() -> None:
    """The kinds of target it delivers to, the rows above it that it prunes, and
    the track windows its sweeper closes."""
    from fleet.retention import register_pruners
    from integrations.kind import IntegrationKind
    from integrations.providers import load_providers
    from outbox.registry import register
    from outbox.sweeper import run_with_every_sweep
    from webhooks.sender import WebhookKind
    from webhooks.tracks import close_due_windows

    register(WebhookKind())
    register(IntegrationKind())
    load_providers()
    register_pruners()
    run_with_every_sweep(close_due_windows)


def register_blueprints(app: Flask) -> None:
    """Every route: the portal's, the API's, health and metrics. (All the OpenAPI
    document needs of an app: tests build it from these alone.)"""
    from accounts import api as accounts_api
    from accounts import views as accounts_views
    from core.health import bp as health_bp
    from core.openapi import bp as openapi_bp
    from fleet import api as fleet_api
    from fleet import views as fleet_views
    from integrations import api as integrations_api
    from integrations import views as integrations_views
    from integrations.servicemax import views as servicemax_views
    from manager import views as manager_views
    from outbox.metrics import bp as metrics_bp
    from webhooks import api as webhooks_api
    from webhooks import views as webhooks_views

    app.register_blueprint(health_bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(accounts_views.bp)
    app.register_blueprint(accounts_api.bp)
    app.register_blueprint(manager_views.bp)
    app.register_blueprint(webhooks_views.bp)
    app.register_blueprint(webhooks_api.bp)
    app.register_blueprint(fleet_api.bp)
    app.register_blueprint(fleet_views.bp)
    app.register_blueprint(integrations_views.bp)
    app.register_blueprint(integrations_api.bp)
    app.register_blueprint(servicemax_views.bp)


def _register_commands(app: Flask) -> None:
    from accounts.cli import accounts_cli, quota_cli, tokens_cli
    from core.encryption import keys_cli
    from demo.seed import demo_cli
    from demo.simulator import simulate_command

    app.cli.add_command(accounts_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(quota_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(simulate_command)


def _register_template_helpers(app: Flask) -> None:
    from core.portal import relative_time

    app.jinja_env.filters["mask"] = mask
    app.jinja_env.filters["relative_time"] = relative_time
    app.jinja_env.globals["now"] = utcnow


def _configure_logging(app: Flask) -> None:
    if not app.testing and not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    if app.config["FLEETHOOK_VERBOSE"]:
        # A line per delivery (outbox.drain) is DEBUG: at hundreds a second it
        # would bury everything else. Only our own loggers go down to DEBUG — at
        # the root, SQLAlchemy would log every statement.
        logging.getLogger("outbox").setLevel(logging.DEBUG)


def _warn_if_htmx_missing(app: Flask) -> None:
    if app.static_folder and not os.path.exists(os.path.join(app.static_folder, HTMX_STATIC_PATH)):
        app.logger.warning(
            "static/%s is missing: the portal's live parts will not work. Run `make assets`.",
            HTMX_STATIC_PATH,
        )

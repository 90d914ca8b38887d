"""Response headers that hold on every response: the Content-Security-Policy
(no inline script or style anywhere, htmx included), framing, sniffing and
referrer rules; HSTS on answers served over HTTPS; and no caching of anything
but static files.

Why no-store on every answer but static files, not only on those that carry a
secret (a new webhook secret or API token, in the API and on portal pages): every
other answer is one account's data too, caching it buys nothing, and a rule by
route or content type would miss the next answer that shows a secret."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, request

# My Domain logins (name.my.salesforce.com, name--box.sandbox.my.salesforce.com,
# older *.force.com hosts): integrations/servicemax/signin.py accepts no others.
SALESFORCE_MY_DOMAINS = ("https://*.salesforce.com", "https://*.force.com")


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    """The policy, forms allowed to lead to the portal and to `form_targets`."""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "font-src 'self'",
            " ".join(["form-action 'self'", *form_targets]),
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def salesforce_logins(config: Mapping[str, Any]) -> list[str]:
    """Where "Connect with Salesforce" leads: the portal answers its form with a
    redirect to the chosen login host, and browsers hold a form's redirects to
    form-action too."""
    origins = set()
    for name in ("FLEETHOOK_SALESFORCE_LOGIN_URL", "FLEETHOOK_SALESFORCE_SANDBOX_LOGIN_URL"):
        parts = urlsplit(str(config.get(name) or ""))
        if parts.scheme and parts.netloc:
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(origins) + [d for d in SALESFORCE_MY_DOMAINS if d not in origins]


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


# A year: browsers then refuse plain http for the portal's host that long.
# Without includeSubDomains: the operator's other hosts are not ours to decide.
STRICT_TRANSPORT_SECURITY = "max-age=31536000"


def add_security_headers(response: Response, policy: str) -> Response:
    response.headers.setdefault("Content-Security-Policy", policy)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # is_secure honours X-Forwarded-Proto only from the trusted proxies (ProxyFix,
    # FLEETHOOK_TRUSTED_PROXIES): over plain http the header would mean nothing.
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
    if (request.endpoint or "").rpartition(".")[2] != "static":
        # Per-account data, secrets shown once among it: never in any cache.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_security(app: Flask) -> None:
    policy = content_security_policy(salesforce_logins(app.config))
    app.after_request(lambda response: add_security_headers(response, policy))

"""How an HTTP answer becomes an attempt's Result, read one way for both senders
(outbox/answers.py): a provider's client here, against a real loopback server that
answers with more than an attempt keeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from integrations.base import Api, shown_headers
from outbox.answers import MAX_RESPONSE_BODY_BYTES

pytestmark = pytest.mark.app_config(FLEETHOOK_ALLOW_LOCAL_NETWORK=True)

# Far past the 8 KiB an attempt keeps of the headers, and the 4 KiB of the body.
LONG_HEADERS = [(f"X-Padding-{n}", "p" * 200) for n in range(60)]
LONG_BODY = b'{"error": "slow down"}' + b" " * 20_000


class Throttling(BaseHTTPRequestHandler):
    """429 with Retry-After, long headers and a long body; /ok answers 200."""

    def do_GET(self) -> None:
        status = 200 if self.path == "/ok" else 429
        self.send_response(status)
        self.send_header("Retry-After", "7")
        self.send_header("Content-Length", str(len(LONG_BODY)))
        for name, value in LONG_HEADERS:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(LONG_BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_a_providers_answer_is_kept_capped_and_its_retry_after_read(app, server):
    response, result = Api(server, {}, "Fleetio").call("GET", "/v1/vehicles")
    assert response is not None and response.status_code == 429
    assert not result.delivered and result.status_code == 429
    assert result.retry_after == 7
    assert result.error == "Fleetio answered HTTP 429: slow down"
    assert result.response_body is not None
    assert len(result.response_body) == MAX_RESPONSE_BODY_BYTES
    headers = result.response_headers or {}
    assert headers["x-fleethook-truncated"] == "true"
    assert headers["retry-after"] == "7"  # names lower-cased, the first ones kept
    assert sum(len(k) + len(v) + 4 for k, v in headers.items()) <= 8192 + 40


def test_a_delivered_answer_carries_no_error_and_no_wait(app, server):
    _, result = Api(server, {}, "Fleetio").call("GET", "/ok")
    assert result.delivered and result.status_code == 200
    assert result.error is None and result.retry_after is None


def test_an_attempt_shows_every_credential_header_masked_whatever_its_name():
    shown = shown_headers(
        "POST",
        "https://api.example.com/v1/things?page=2",
        {
            "Authorization": "Bearer abcdefghijkl",
            "X-Brand-New-Key": "s3cr3t-value-99",
            "Accept": "application/json",
        },
    )
    assert shown == {
        "method": "POST",
        "path": "/v1/things",
        "authorization": "Bearer ••••••••ijkl",
        "x-brand-new-key": "••••••••e-99",
        "accept": "application/json",
    }

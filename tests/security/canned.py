"""A tiny real HTTP server on loopback that answers every request with a canned fault:
what a proxy, a load balancer or a dying HubSpot sends. The edge we do not own, served over
a real socket so httpx's real parsing and error paths run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROXY_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
CAPTIVE_PORTAL = b"<!doctype html><html><body><form>Sign in to the Wi-Fi</form></body></html>"


class CannedServer:
    """`scenario` picks the answer (see `SCENARIOS`); `requests` counts what arrived;
    `good_token` is the access token the ``ok`` scenario hands out."""

    SCENARIOS = (
        "ok", "html502", "html200", "empty503", "truncated_json", "invalid_json",
        "json_array", "short_body", "reset", "hang",
    )

    def __init__(self) -> None:
        self.scenario = "ok"
        self.requests = 0
        self.good_token = "C" + "k" * 60
        self._release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests += 1
                outer._respond(self)

            do_GET = do_POST = do_DELETE = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CannedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _respond(self, h: BaseHTTPRequestHandler) -> None:
        scenario = self.scenario

        def send(status: int, body: bytes, ctype: str, length: int | None = None) -> None:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body) if length is None else length))
            h.end_headers()
            h.wfile.write(body)
            h.wfile.flush()

        if scenario == "ok":
            body = {
                "token_type": "bearer", "access_token": self.good_token,
                "refresh_token": "na1-0000-1111-2222-3333-444444444444", "expires_in": 1800,
                "hub_id": 1234567, "scopes": ["oauth", "crm.objects.contacts.read"],
                "token_use": "access_token",
            }
            send(200, json.dumps(body).encode(), "application/json")
        elif scenario == "html502":
            send(502, PROXY_502, "text/html")
        elif scenario == "html200":
            send(200, CAPTIVE_PORTAL, "text/html")
        elif scenario == "empty503":
            send(503, b"", "text/plain")
        elif scenario == "truncated_json":
            send(200, b'{"token_type": "bearer", "access_token": "Cabc", "expires_in": 18',
                 "application/json")
        elif scenario == "invalid_json":
            send(200, b"{'access_token': 'not JSON'}", "application/json")
        elif scenario == "json_array":
            send(200, b"[]", "application/json")
        elif scenario == "short_body":
            # Promises 500 bytes, sends 30, hangs up: a connection cut mid-answer.
            send(200, b'{"access_token": "Cabcdefghijk', "application/json", length=500)
            h.close_connection = True
        elif scenario == "reset":
            h.close_connection = True  # hang up without a status line
        elif scenario == "hang":
            self._release.wait(30)
            h.close_connection = True
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(scenario)

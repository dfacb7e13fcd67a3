"""Helpers for tests of HTML pages (the authorize pages): form parsing and a browser-like
client over httpx that follows 303s and submits the page's own forms."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx

CLIENT_ID = "7fff1e36-2d40-4ae1-bbb1-5266d59564fb"
REDIRECT_URI = "http://localhost:3000/oauth-callback"
BASE_URL = "http://localhost:8765"


def authorize_path(account_id: int | str | None = None, **params: str | None) -> str:
    """``/oauth/authorize?…`` with the default app's values, overridable (None drops one)."""
    values: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "crm.objects.contacts.read",
        "optional_scope": "crm.objects.contacts.write automation",
    }
    values.update(params)
    query = urlencode({k: v for k, v in values.items() if v is not None}, quote_via=quote)
    prefix = "/oauth/authorize" if account_id is None else f"/oauth/{account_id}/authorize"
    return f"{prefix}?{query}"


class Form:
    def __init__(self, action: str, method: str) -> None:
        self.action = action
        self.method = method
        self.fields: dict[str, str] = {}
        self.buttons: list[tuple[str, str]] = []


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.error_message: str | None = None
        self.h1: str | None = None
        self._capture: str | None = None
        self._text: list[str] = []
        self.error_kind: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get")))
        elif tag == "input" and self.forms and a.get("type") == "hidden":
            self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))
        elif tag == "p" and a.get("id") == "error-message" or tag == "h1":
            self._capture = tag
            self._text = []
        if "data-error-kind" in a:
            self.error_kind = a["data-error-kind"]

    def handle_endtag(self, tag: str) -> None:
        if self._capture == tag:
            text = " ".join("".join(self._text).split())
            if tag == "h1":
                self.h1 = text
            else:
                self.error_message = text
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture:
            self._text.append(data)


def parse_page(body: str) -> _Forms:
    parser = _Forms()
    parser.feed(body)
    return parser


def form_with(page: _Forms, action_suffix: str) -> Form:
    for form in page.forms:
        if form.action.endswith(action_suffix):
            return form
    raise AssertionError(f"no form posting to {action_suffix}: {[f.action for f in page.forms]}")


def text_of(body: str) -> str:
    """The visible text of a page, whitespace collapsed and entities decoded."""

    class _Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self._skip = 0

        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag in ("style", "script", "title"):
                self._skip += 1

        def handle_endtag(self, tag: str) -> None:
            if tag in ("style", "script", "title"):
                self._skip -= 1

        def handle_data(self, data: str) -> None:
            if not self._skip:
                self.parts.append(data)

    parser = _Text()
    parser.feed(body)
    return " ".join(html.unescape(" ".join(parser.parts)).split())


def redirect_query(response: httpx.Response) -> dict[str, list[str]]:
    location = response.headers["location"]
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


class Browser:
    """Drives the pages as a user would: follows 303s, submits the page's own forms."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def get(self, path: str) -> httpx.Response:
        response = await self.client.get(path)
        while response.status_code == 303:
            response = await self.client.get(response.headers["location"])
        return response

    async def submit(
        self, response: httpx.Response, action_suffix: str, **fields: str
    ) -> httpx.Response:
        form = form_with(parse_page(response.text), action_suffix)
        data = dict(form.fields)
        data.update(fields)
        result = await self.client.post(form.action, data=data)
        while result.status_code == 303:
            result = await self.client.get(result.headers["location"])
        return result

    async def login(
        self, response: httpx.Response, email: str = "admin@example.com", password: str = "password"
    ) -> httpx.Response:
        return await self.submit(response, "/login", email=email, password=password)

    async def choose(self, response: httpx.Response, hub_id: int) -> httpx.Response:
        return await self.submit(response, "/account", hub_id=str(hub_id))

    async def decide(self, response: httpx.Response, decision: str) -> httpx.Response:
        return await self.submit(response, "/decision", decision=decision)

"""Storage on SQLite and PostgreSQL: schema, digests at rest, atomic single use under
concurrency (also between two servers on one database), shared clock, database failures."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from hubspot_oauth.server import DatabaseSchemaError, ServerSettings, create_app
from hubspot_oauth.server.hubspot import LocalHubSpot
from hubspot_oauth.server.models import SCHEMA_REVISION, VERSION_TABLE, metadata
from hubspot_oauth.server.storage import current_revision, make_engine, upgrade
from hubspot_oauth.server.wire import OAuthError
from tests.support.rate_window import start_of_next_rate_window

from .conftest import ACME, ADMIN, CLIENT, REDIRECT, race


def _code(hubspot: LocalHubSpot) -> str:
    return hubspot.issue_code(client_id=CLIENT["client_id"], redirect_uri=REDIRECT,
                              user_email=ADMIN, hub_id=ACME,
                              scopes=["crm.objects.contacts.read"])


def test_schema_is_created_and_checked(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(database_url) == SCHEMA_REVISION
        assert current_revision(engine) == SCHEMA_REVISION
        assert upgrade(database_url) == SCHEMA_REVISION  # idempotent
        tables = set(sa.inspect(engine).get_table_names())
        assert set(metadata.tables) <= tables
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0001_initial'"))  # noqa: S608
    finally:
        engine.dispose()
    with pytest.raises(DatabaseSchemaError) as info:
        create_app(ServerSettings(database_url=database_url))
    message = str(info.value)
    assert "is at local HubSpot schema revision '0001_initial'" in message
    assert f"needs '{SCHEMA_REVISION}'" in message
    assert "run `hubspot-oauth db upgrade --for server --database-url " in message


def test_codes_tokens_and_secrets_are_stored_only_as_digests(servers) -> None:
    hubspot = servers()
    code = _code(hubspot)
    tokens = hubspot.exchange_code(**CLIENT, code=code, redirect_uri=REDIRECT)
    secrets = [code, tokens["access_token"], tokens["refresh_token"], CLIENT["client_secret"],
               "password"]
    dump = []
    with hubspot.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                dump.append(repr(tuple(row)))
    text = "\n".join(dump)
    for secret in secrets:
        assert secret not in text
    assert repr(tokens["hub_id"]) in text  # the dump did read the rows


def test_twenty_concurrent_redemptions_one_success(servers) -> None:
    first, second = servers(), servers()
    code = _code(first)
    calls = [
        (lambda h=h: h.exchange_code(**CLIENT, code=code, redirect_uri=REDIRECT))
        for h in [first, second] * 10
    ]
    results = race(calls)
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, OAuthError)]
    assert len(wins) == 1, results
    assert len(losses) == 19, results
    assert {e.status for e in losses} == {"BAD_AUTH_CODE"}
    # The replays revoked what the code produced (RFC 6749 §4.1.2).
    with pytest.raises(OAuthError) as info:
        first.refresh(**CLIENT, refresh_token=wins[0]["refresh_token"])
    assert info.value.status == "BAD_REFRESH_TOKEN"
    stats = first.stats()["token"]["authorization_code"]
    assert stats == {"ok": 1, "error": 19}


def test_concurrent_refresh_with_rotation_has_one_winner(servers) -> None:
    first = servers(refresh_token_rotation="rotate")
    second = servers(refresh_token_rotation="rotate")
    tokens = first.exchange_code(**CLIENT, code=_code(first), redirect_uri=REDIRECT)
    results = race([
        (lambda h=h: h.refresh(**CLIENT, refresh_token=tokens["refresh_token"]))
        for h in [first, second] * 5
    ])
    wins = [r for r in results if isinstance(r, dict)]
    assert len(wins) == 1, results
    assert all(isinstance(r, OAuthError) and r.status == "BAD_REFRESH_TOKEN"
               for r in results if not isinstance(r, dict))
    # The winner's new refresh token works.
    assert first.refresh(**CLIENT, refresh_token=wins[0]["refresh_token"])


def test_concurrent_refresh_without_rotation_all_succeed(servers) -> None:
    first, second = servers(), servers()
    tokens = first.exchange_code(**CLIENT, code=_code(first), redirect_uri=REDIRECT)
    results = race([
        (lambda h=h: h.refresh(**CLIENT, refresh_token=tokens["refresh_token"]))
        for h in [first, second] * 5
    ])
    assert all(isinstance(r, dict) for r in results), results
    assert {r["refresh_token"] for r in results} == {tokens["refresh_token"]}
    assert len({r["access_token"] for r in results}) == 10


def test_two_servers_on_one_database_act_as_one(servers) -> None:
    first, second = servers(), servers()
    tokens = first.exchange_code(**CLIENT, code=_code(first), redirect_uri=REDIRECT)
    # An app registered through one is known to the other (shared generation counter).
    _, client_id, secret = second.create_app_registration(
        name="Later", redirect_urls=[REDIRECT], scopes=["crm.objects.contacts.read"])
    code = first.issue_code(client_id=client_id, redirect_uri=REDIRECT, user_email=ADMIN,
                            scopes=["crm.objects.contacts.read"])
    assert second.exchange_code(client_id=client_id, client_secret=secret, code=code,
                                redirect_uri=REDIRECT)["hub_id"] == ACME
    # The clock, faults and uninstalls are shared.
    second.clock.advance(1801)
    assert first.access_token_info(tokens["access_token"]) is None
    first.clock.reset()
    assert second.access_token_info(tokens["access_token"]) is not None
    first.faults.add(endpoint="api", fault="rate_limit")
    assert second.faults.take("api").fault == "rate_limit"
    assert first.faults.take("api") is None
    second.uninstall(app_id=1, hub_id=ACME)
    with pytest.raises(OAuthError):
        first.refresh(**CLIENT, refresh_token=tokens["refresh_token"])


def test_a_second_server_does_not_reseed(servers) -> None:
    first = servers()
    _, client_id, _ = first.create_app_registration(
        name="Kept", redirect_urls=[REDIRECT], scopes=["oauth"])
    second = servers()
    assert second.app(client_id) is not None
    assert [a.app_id for a in second.list_apps()] == [1, 2]


@pytest.mark.anyio
async def test_database_failure_is_503_in_hubspots_shape(sqlite_url: str,
                                                         unused_port: int) -> None:
    app = create_app(ServerSettings(database_url=sqlite_url))
    hubspot = app.state.hubspot
    path = sqlite_url.removeprefix("sqlite:///")
    engines = {
        "read-only": make_engine(f"sqlite:///file:{path}?mode=ro&uri=true"),
        "unreachable": sa.create_engine(
            f"postgresql+psycopg://nobody@127.0.0.1:{unused_port}/nothing",
            connect_args={"connect_timeout": 2}),
    }
    original = hubspot.engine
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://local-hubspot.test") as client:
            for name, engine in engines.items():
                hubspot.engine = hubspot.clock._engine = hubspot.faults._engine = engine
                response = await client.post("/oauth/v3/token", data={
                    "grant_type": "refresh_token", **CLIENT,
                    "refresh_token": "na1-0000-0000-0000-0000-000000000000"})
                assert response.status_code == 503, (name, response.text)
                body = response.json()
                assert body["category"] == "SERVICE_UNAVAILABLE"
                assert body["correlationId"] == response.headers["x-hubspot-correlation-id"]
                assert "database is unavailable" in body["message"]
    finally:
        hubspot.engine = hubspot.clock._engine = hubspot.faults._engine = original
        for engine in engines.values():
            engine.dispose()
        hubspot.close()


@pytest.mark.anyio
async def test_http_flow_on_both_databases(database_url: str) -> None:
    """The endpoints' statements (upserts, JSON columns, row locks) on each database."""
    app = create_app(ServerSettings(database_url=database_url, rate_limit_max=2,
                                    refresh_token_rotation="rotate"))
    hubspot = app.state.hubspot
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://local-hubspot.test") as client:
            tokens = (await client.post("/oauth/2026-03/token", data={
                "grant_type": "authorization_code", **CLIENT, "redirect_uri": REDIRECT,
                "code": _code(hubspot)})).json()
            rotated = (await client.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", **CLIENT,
                "refresh_token": tokens["refresh_token"]})).json()
            assert rotated["refresh_token"] != tokens["refresh_token"]
            bearer = {"Authorization": f"Bearer {rotated['access_token']}"}
            start_of_next_rate_window(hubspot.clock)  # all three in one 10 s window
            statuses = [(await client.get("/crm/v3/objects/contacts", headers=bearer)
                         ).status_code for _ in range(3)]
            assert statuses == [200, 200, 429]
            intro = (await client.post("/oauth/v3/token/introspect", data={
                **CLIENT, "token": rotated["refresh_token"],
                "token_type_hint": "refresh_token"})).json()
            assert intro["active"] is True and intro["scopes"] == tokens["scopes"]
            revoked = await client.post("/oauth/v3/token/revoke", data={
                **CLIENT, "token": rotated["refresh_token"]})
            assert revoked.status_code == 200
            gone = (await client.post("/oauth/v3/token/introspect", data={
                **CLIENT, "token": rotated["access_token"]})).json()
            assert gone == {"active": False}
            stats = (await client.get("/_emulator/stats")).json()
            assert stats["token"]["refresh_token"] == {"ok": 1, "error": 0}
            assert stats["api"] == {"ok": 2, "error": 1}
            assert stats["introspect"] == {"ok": 2, "error": 0}
    finally:
        hubspot.close()


@pytest.mark.anyio
async def test_locked_sqlite_database_is_503(tmp_path) -> None:
    path = tmp_path / "locked.db"
    app = create_app(ServerSettings(database_url=f"sqlite:///{path}"))
    hubspot = app.state.hubspot
    impatient = make_engine(f"sqlite:///{path}")

    @sa.event.listens_for(impatient, "connect")
    def _short_busy_timeout(dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.execute("PRAGMA busy_timeout=50")

    import sqlite3

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    original = hubspot.engine
    try:
        hubspot.engine = hubspot.clock._engine = hubspot.faults._engine = impatient
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://local-hubspot.test") as client:
            response = await client.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", **CLIENT,
                "refresh_token": "na1-0000-0000-0000-0000-000000000000"})
        assert response.status_code == 503
        assert response.json()["category"] == "SERVICE_UNAVAILABLE"
        assert response.headers["retry-after"] == "1"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        hubspot.engine = hubspot.clock._engine = hubspot.faults._engine = original
        impatient.dispose()
        hubspot.close()


def test_refresh_racing_a_revoke_leaves_no_live_access_token(servers) -> None:
    """RFC 7009 §2.1 + the refresh-vs-revoke race (Keycloak #51312): once the revoke has
    answered, no access token of that authorization works, whichever refresh won."""
    first, second = servers(), servers()
    tokens = first.exchange_code(**CLIENT, code=_code(first), redirect_uri=REDIRECT)
    refreshes = [
        (lambda h=h: h.refresh(**CLIENT, refresh_token=tokens["refresh_token"]))
        for h in [first, second] * 5
    ]
    revoke = [lambda: second.revoke(**CLIENT, token=tokens["refresh_token"])]
    results = race(refreshes + revoke)
    assert not isinstance(results[-1], Exception), results[-1]
    issued = [tokens["access_token"]] + [r["access_token"] for r in results[:-1]
                                         if isinstance(r, dict)]
    for result in results[:-1]:
        assert isinstance(result, dict) or (
            isinstance(result, OAuthError) and result.status == "BAD_REFRESH_TOKEN"), result
    for access in issued:
        assert first.introspect(**CLIENT, token=access) == {"active": False}


@pytest.mark.parametrize("when", ["before-connecting", "while-checkpointing"])
def test_close_waits_for_the_wal_checkpoint_thread(tmp_path, monkeypatch, when: str) -> None:
    # A checkpoint thread must not open a connection once LocalHubSpot.close() has
    # returned (the engine is disposed then): close skips one not yet connected and
    # joins a running one.
    import threading
    import time

    app = create_app(ServerSettings(database_url=f"sqlite:///{tmp_path / 'wal.db'}"))
    hubspot = app.state.hubspot
    inline = hubspot._inline
    monkeypatch.setattr(inline, "CHECKPOINT_EVERY", 1)
    go, connecting, closed = threading.Event(), threading.Event(), threading.Event()
    checkouts_after_close: list[bool] = []

    @sa.event.listens_for(hubspot.engine, "checkout")
    def _checkout(*_args: object) -> None:
        if threading.current_thread().name == "hubspot-oauth-wal-checkpoint":
            checkouts_after_close.append(closed.is_set())
            connecting.set()
            if when == "while-checkpointing":
                assert go.wait(30)

    original = inline._checkpoint

    def held_checkpoint(engine: sa.Engine) -> None:
        if when == "before-connecting":
            assert go.wait(30)
        original(engine)

    monkeypatch.setattr(inline, "_checkpoint", held_checkpoint)
    before = set(threading.enumerate())
    with inline.transaction(hubspot.engine):
        pass  # an inline commit: with CHECKPOINT_EVERY=1 it starts the worker thread
    (worker,) = [t for t in set(threading.enumerate()) - before
                 if t.name == "hubspot-oauth-wal-checkpoint"]
    if when == "while-checkpointing":
        assert connecting.wait(30)  # the worker holds a pooled connection
    alive_after_close: list[bool] = []

    def close() -> None:
        hubspot.close()
        alive_after_close.append(worker.is_alive())
        closed.set()

    closer = threading.Thread(target=close)
    closer.start()
    deadline = time.monotonic() + 30
    # Let the worker go once close() is under way (it marked itself closed) or done.
    while not (getattr(inline, "_closed", False) or closed.is_set()):
        assert time.monotonic() < deadline
        time.sleep(0.001)
    go.set()
    closer.join(30)
    worker.join(30)
    assert alive_after_close == [False]  # close() returned only after the worker ended
    # No connection opened after close(): the worker held back before connecting skipped
    # (nothing to checkpoint any more); the one already checkpointing had its one, before.
    assert checkouts_after_close == ([] if when == "before-connecting" else [False])

"""`hubspot-oauth tokens …` over a token store filled by real code exchanges against the
local HubSpot on a loopback port."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from hubspot_oauth import Endpoints, OAuthClient, ReauthorizationRequiredError, TokenStore
from hubspot_oauth.cli import cli

from .conftest import LocalHubSpot


def _client(hs: LocalHubSpot) -> OAuthClient:
    return OAuthClient(client_id=hs.client_id, client_secret=hs.client_secret,
                       redirect_uri=hs.redirect_uri, scopes=["crm.objects.contacts.read"],
                       endpoints=Endpoints.local(hs.base_url))


def _connect(hs: LocalHubSpot, keys: list[str], hub_id: int = 1234567) -> TokenStore:
    client = _client(hs)
    store = TokenStore(hs.tokens_url, client=client)
    for key in keys:
        code = hs.hubspot.issue_code(
            client_id=hs.client_id, redirect_uri=hs.redirect_uri,
            user_email="admin@example.com", hub_id=hub_id,
            scopes=["crm.objects.contacts.read"], optional_scopes=[],
        )
        store.save(client.with_account_details(client.exchange_code(code)), key=key,
                   describe=False)
    return store


def run(hs: LocalHubSpot, *args: str):
    return CliRunner().invoke(cli, list(args), env=hs.env())


def test_list_table_and_json(local_hubspot: LocalHubSpot) -> None:
    _connect(local_hubspot, ["acme"])
    _connect(local_hubspot, ["globex"], hub_id=7654321)
    table = run(local_hubspot, "tokens", "list")
    assert table.exit_code == 0, table.output
    for text in ("key", "hub_id", "domain", "user", "scopes", "expires in", "status",
                 "acme", "globex.example.com", "admin@example.com", "active", "29m"):
        assert text in table.stdout
    as_json = run(local_hubspot, "tokens", "list", "--json")
    rows = {r["key"]: r for r in json.loads(as_json.stdout)}
    assert rows["globex"]["hub_id"] == 7654321
    assert rows["acme"]["scopes"] == ["crm.objects.contacts.read", "oauth"] or \
        "crm.objects.contacts.read" in rows["acme"]["scopes"]
    assert 1700 < rows["acme"]["expires_in"] <= 1800


def test_list_empty_store_says_what_to_do(local_hubspot: LocalHubSpot) -> None:
    TokenStore(local_hubspot.tokens_url).close()  # an empty store (login creates it)
    result = run(local_hubspot, "tokens", "list")
    assert result.exit_code == 0
    assert "hubspot-oauth login" in result.stdout
    assert json.loads(run(local_hubspot, "tokens", "list", "--json").stdout) == []


def test_show_masks_and_reveal_prints_only_the_access_token(local_hubspot) -> None:
    store = _connect(local_hubspot, ["acme"])
    token = store.get("acme")
    shown = run(local_hubspot, "tokens", "show", "acme")
    assert shown.exit_code == 0
    assert token.access_token not in shown.output
    assert token.refresh_token not in shown.output
    assert "acme.example.com" in shown.stdout
    as_json = json.loads(run(local_hubspot, "tokens", "show", "acme", "--json").stdout)
    assert as_json["access_token"] != token.access_token
    assert as_json["refresh_token"] != token.refresh_token
    revealed = run(local_hubspot, "tokens", "show", "acme", "--reveal")
    assert revealed.exit_code == 0
    assert revealed.stdout == token.access_token + "\n"
    # The revealed token works as a bearer token.
    response = httpx.get(local_hubspot.base_url + "/crm/v3/objects/contacts",
                         headers={"Authorization": f"Bearer {revealed.stdout.strip()}"})
    assert response.status_code == 200


def test_reveal_refreshes_an_expired_token(local_hubspot: LocalHubSpot) -> None:
    store = _connect(local_hubspot, ["acme"])
    old = store.get("acme").access_token
    # Expire it in the store's eyes (store clock runs real time; rewrite expires_at).
    from datetime import UTC, datetime, timedelta

    store.save(store.get("acme").replace(expires_at=datetime.now(UTC) - timedelta(seconds=1)),
               key="acme")
    revealed = run(local_hubspot, "tokens", "show", "acme", "--reveal")
    assert revealed.exit_code == 0, revealed.output
    assert revealed.stdout.strip() != old
    assert local_hubspot.hubspot.stats()["token"]["refresh_token"]["ok"] == 1


def test_refresh_one(local_hubspot: LocalHubSpot) -> None:
    store = _connect(local_hubspot, ["acme"])
    before = store.get("acme").access_token
    result = run(local_hubspot, "tokens", "refresh", "acme")
    assert result.exit_code == 0, result.output
    assert "Refreshed acme" in result.stdout
    assert store.get("acme").access_token != before
    data = json.loads(run(local_hubspot, "tokens", "refresh", "acme", "--json").stdout)
    assert data["refreshed"] is True and data["key"] == "acme"
    assert local_hubspot.hubspot.stats()["token"]["refresh_token"]["ok"] == 2


def test_refresh_all_reports_failures_and_goes_on(local_hubspot: LocalHubSpot) -> None:
    """Issue 8: 20 connections, 2 refreshes made to fail -> "18 refreshed, 2 failed", 1."""
    keys = [f"account-{i:02d}" for i in range(20)]
    _connect(local_hubspot, keys)
    httpx.post(local_hubspot.base_url + "/_emulator/faults",
               json={"endpoint": "token", "fault": "invalid_grant", "times": 2}
               ).raise_for_status()
    result = run(local_hubspot, "tokens", "refresh", "--all")
    assert result.exit_code == 1, result.output
    assert "18 refreshed, 2 failed" in result.stdout
    assert result.stdout.count("failed account-") == 2
    stats = local_hubspot.hubspot.stats()["token"]["refresh_token"]
    assert stats["ok"] == 18 and stats["error"] == 2
    # A second run: every connection that is still active refreshes; exit 0 only if all do.
    again = run(local_hubspot, "tokens", "refresh", "--all", "--json")
    data = json.loads(again.stdout)
    assert data["refreshed"] + data["failed"] == 20
    assert again.exit_code == (1 if data["failed"] else 0)


def test_refresh_all_json_counts(local_hubspot: LocalHubSpot) -> None:
    _connect(local_hubspot, ["a", "b", "c"])
    result = run(local_hubspot, "tokens", "refresh", "--all", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data == {**data, "refreshed": 3, "failed": 0}
    assert sorted(r["key"] for r in data["results"]) == ["a", "b", "c"]


def test_revoke_deletes_and_the_refresh_token_stops_working(local_hubspot) -> None:
    store = _connect(local_hubspot, ["acme"])
    refresh_token = store.get("acme").refresh_token
    result = run(local_hubspot, "tokens", "revoke", "acme")
    assert result.exit_code == 0, result.output
    assert "Revoked" in result.stdout
    assert store.connections() == []
    with pytest.raises(ReauthorizationRequiredError):
        _client(local_hubspot).refresh(refresh_token)


def test_introspect(local_hubspot: LocalHubSpot) -> None:
    _connect(local_hubspot, ["acme"])
    result = run(local_hubspot, "tokens", "introspect", "acme", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["active"] is True and data["hub_id"] == 1234567
    assert "crm.objects.contacts.read" in data["scopes"]
    text = run(local_hubspot, "tokens", "introspect", "acme", "--refresh-token")
    assert text.exit_code == 0 and "1234567" in text.stdout


@pytest.mark.parametrize("stored", [[], ["acme"]], ids=["empty store", "other key"])
def test_unknown_key_is_one_line_exit_1(local_hubspot: LocalHubSpot, stored) -> None:
    _connect(local_hubspot, stored).close()
    for args in (["show", "nope"], ["refresh", "nope"], ["revoke", "nope"],
                 ["introspect", "nope"]):
        result = run(local_hubspot, "tokens", *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.strip() == "Error: no HubSpot connection stored under key 'nope'"
        as_json = run(local_hubspot, "tokens", *args, "--json")
        assert json.loads(as_json.stdout)["ok"] is False


def test_refresh_needs_key_or_all(local_hubspot: LocalHubSpot) -> None:
    for args in (["tokens", "refresh"], ["tokens", "refresh", "acme", "--all"]):
        result = run(local_hubspot, *args)
        assert result.exit_code == 2
        assert "either a connection KEY or --all" in result.stderr


def test_refresh_without_credentials_is_a_usage_error(local_hubspot: LocalHubSpot) -> None:
    _connect(local_hubspot, ["acme"])
    env = {**local_hubspot.env(), "HUBSPOT_CLIENT_SECRET": ""}
    result = CliRunner().invoke(cli, ["tokens", "refresh", "acme"], env=env)
    assert result.exit_code == 2
    assert "HUBSPOT_CLIENT_SECRET" in result.stderr
    # list works without credentials.
    assert CliRunner().invoke(cli, ["tokens", "list"], env=env).exit_code == 0


def test_a_wrong_client_secret_says_which_settings_to_check(
        local_hubspot: LocalHubSpot) -> None:
    """HubSpot's BAD_CLIENT_SECRET names its parameter; the one line also says where the
    CLI took the secret from, and the connection is kept as it was."""
    store = _connect(local_hubspot, ["acme"])
    before = store.get("acme")
    result = CliRunner().invoke(cli, ["tokens", "refresh", "acme"],
                                env={**local_hubspot.env(), "HUBSPOT_CLIENT_SECRET": "wrong"})
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "BAD_CLIENT_SECRET" in lines[0], lines
    assert lines[0].endswith("; check the app's client ID and secret (--client-id/"
                             "--client-secret or HUBSPOT_CLIENT_ID/HUBSPOT_CLIENT_SECRET)")
    assert "wrong" not in lines[0]
    assert store.get("acme") == before
    assert not store.connection("acme").needs_reauthorization

"""The default seed of DESIGN §4 and TOML seed files (clear one-line errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubspot_oauth.server import SeedError, ServerSettings, create_app, default_seed, load_seed
from hubspot_oauth.server.seed import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET


def test_default_seed_is_designs() -> None:
    seed = default_seed()
    (app,) = seed.apps
    assert (app.app_id, app.name) == (1, "Quickstart App")
    assert app.client_id == "7fff1e36-2d40-4ae1-bbb1-5266d59564fb" == DEFAULT_CLIENT_ID
    assert app.client_secret == "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d" == DEFAULT_CLIENT_SECRET
    assert app.redirect_urls == ("http://localhost:3000/oauth-callback",
                                 "https://www.example.com/auth-callback")
    assert app.scopes == ("crm.objects.contacts.read",)
    assert app.optional_scopes == ("crm.objects.contacts.write", "automation")
    acme, globex = seed.portals
    assert (acme.hub_id, acme.hub_domain, acme.contacts, acme.missing_scopes) == (
        1234567, "acme.example.com", 25, ())
    assert acme.available_scopes is None
    assert (globex.hub_id, globex.hub_domain, globex.contacts, globex.missing_scopes) == (
        7654321, "globex.example.com", 3, ("automation",))
    admin, viewer = seed.users
    assert admin.email == "admin@example.com" and admin.password == "password"
    assert admin.roles == {1234567: "super_admin", 7654321: "super_admin"}
    assert viewer.email == "viewer@example.com" and viewer.password == "password"
    assert viewer.roles == {1234567: "none"}


def test_seeded_server_stores_no_plain_secrets(sqlite_url: str) -> None:
    app = create_app(ServerSettings(database_url=sqlite_url))
    hubspot = app.state.hubspot
    try:
        assert hubspot.authenticate_user("admin@example.com", "password").user_id == 2620001
        assert hubspot.authenticate_user("ADMIN@example.com", "password") is not None
        assert hubspot.authenticate_user("admin@example.com", "Password") is None
        assert hubspot.authenticate_user("nobody@example.com", "password") is None
        [acme] = [p for p in hubspot.portals_for("viewer@example.com")]
        assert acme.hub_id == 1234567 and acme.may_install is False
        app_record = hubspot.app(DEFAULT_CLIENT_ID)
        assert app_record.secret_matches(DEFAULT_CLIENT_SECRET)
        assert not app_record.secret_matches(DEFAULT_CLIENT_SECRET + "x")
        assert DEFAULT_CLIENT_SECRET not in repr(app_record)
    finally:
        hubspot.close()
    raw = Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()
    assert DEFAULT_CLIENT_SECRET.encode() not in raw
    assert b"$argon2id$" in raw


GOOD = """
[[apps]]
app_id = 1
name = "First"
client_id = "first-client"
client_secret = "first-secret-value"
redirect_urls = ["http://localhost:3000/oauth-callback"]
scopes = ["crm.objects.contacts.read"]

[[apps]]
app_id = 2
name = "Second"
client_id = "second-client"
client_secret = "second-secret-value"
redirect_urls = ["https://app2.example.com/cb"]
scopes = ["crm.objects.contacts.read"]
optional_scopes = ["automation"]

[[portals]]
hub_id = 111
hub_domain = "one.example.com"
contacts = 2

[[portals]]
hub_id = 222
hub_domain = "two.example.com"
hublet = "eu1"
lacks = ["automation"]

[[users]]
email = "Owner@Example.com"
password = "pw-owner"
roles = { 111 = "super_admin", 222 = "marketplace" }

[[contacts]]
hub_id = 222
properties = { firstname = "Eve", email = "eve@two.example.com" }
"""


def test_toml_seed(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(GOOD)
    seed = load_seed(path)
    assert [a.client_id for a in seed.apps] == ["first-client", "second-client"]
    assert seed.users[0].email == "owner@example.com"
    assert seed.users[0].roles == {111: "super_admin", 222: "marketplace"}
    assert not seed.is_default
    app = create_app(ServerSettings(database_url=sqlite_url, seed_file=path))
    hubspot = app.state.hubspot
    try:
        portals = hubspot.portals_for("owner@example.com")
        assert [(p.hub_id, p.may_install) for p in portals] == [(111, True), (222, True)]
        assert not portals[1].has_scope("automation")
        code = hubspot.issue_code(client_id="second-client",
                                  redirect_uri="https://app2.example.com/cb",
                                  user_email="owner@example.com", hub_id=222,
                                  scopes=["crm.objects.contacts.read"],
                                  optional_scopes=["automation"])
        assert code.startswith("eu1-")  # portal 222 is in the EU data centre
        body = hubspot.exchange_code(client_id="second-client",
                                     client_secret="second-secret-value", code=code,
                                     redirect_uri="https://app2.example.com/cb")
        assert body["scopes"] == ["oauth", "crm.objects.contacts.read"]
        assert body["refresh_token"].startswith("eu1-")
        info = hubspot.access_token_info(body["access_token"])
        assert info["signed_access_token"]["hublet"] == "eu1"
        other = hubspot.issue_code(client_id="first-client",
                                   redirect_uri="http://localhost:3000/oauth-callback",
                                   user_email="owner@example.com", hub_id=111,
                                   scopes=["crm.objects.contacts.read"])
        assert other.startswith("na1-")  # no hublet in the seed: the server's
    finally:
        hubspot.close()


@pytest.mark.parametrize(("text", "problem"), [
    ("[[apps]\nname=", "not valid TOML"),
    ("", "no [[apps]]: a seed needs at least one app"),
    ('colour = "red"', "unknown top-level key 'colour'"),
    (GOOD.replace('name = "First"\n', ""), "apps[0]: missing 'name'"),
    (GOOD.replace("app_id = 2", "app_id = 1"), "apps: duplicate app_id 1"),
    (GOOD.replace('scopes = ["crm.objects.contacts.read"]\n\n[[apps]]',
                  'scopes = "crm.objects.contacts.read"\n\n[[apps]]'),
     "apps[0]: 'scopes' must be list, got str"),
    (GOOD.replace('"super_admin"', '"owner"'),
     "users[0]: role 'owner' must be one of super_admin, marketplace, none"),
    (GOOD.replace("111 = ", "999 = "), "users[0]: roles names hub_id 999, which no portal has"),
    (GOOD.replace("contacts = 2", "contacts = -1"),
     "portals[0]: 'contacts' must be between 0 and 10000"),
    (GOOD.replace('hub_id = 222\nproperties', 'hub_id = 5\nproperties'),
     "contacts[0]: hub_id 5 is not a portal of this seed"),
    (GOOD.replace('client_secret = "first-secret-value"', 'client_secret = "short"'),
     "apps[0]: 'client_secret' must be at least 8 characters"),
    (GOOD.replace('hub_domain = "one.example.com"', 'hub_domain = "one.example.com"\nx = 1'),
     "portals[0]: unknown key 'x'"),
    (GOOD.replace('hublet = "eu1"', 'hublet = "EU 1"'),
     "portals[1]: 'hublet' must look like 'na1' or 'eu1'"),
])
def test_malformed_seed_is_one_clear_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SeedError) as info:
        load_seed(path)
    message = str(info.value)
    assert message.startswith(f"seed file {path}: ")
    assert problem in message
    assert "\n" not in message


def test_missing_seed_file(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match=r"seed file .*nope\.toml: no such file$"):
        load_seed(tmp_path / "nope.toml")


def test_seed_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(SeedError, match="seed file .*binary.toml: "):
        load_seed(path)


def test_create_app_with_bad_seed_raises_seed_error(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[apps]]\n")
    with pytest.raises(SeedError):
        create_app(ServerSettings(database_url=sqlite_url, seed_file=path))


def test_banner_shows_secrets_only_of_the_default_seed(tmp_path: Path, sqlite_url: str) -> None:
    from hubspot_oauth.server.runner import banner

    path = tmp_path / "seed.toml"
    path.write_text(GOOD)
    app = create_app(ServerSettings(database_url=sqlite_url, seed_file=path))
    try:
        text = banner(app.state.hubspot, "http://127.0.0.1:8765")
    finally:
        app.state.hubspot.close()
    assert "client_id      first-client" in text
    assert "first-secret-value" not in text and "pw-owner" not in text
    assert f"client_secret  (as in {path})" in text
    assert "user owner@example.com (password from seed; 111: super_admin" in text


def test_a_database_seeded_from_another_seed_is_refused(tmp_path: Path,
                                                        sqlite_url: str) -> None:
    create_app(ServerSettings(database_url=sqlite_url)).state.hubspot.close()
    path = tmp_path / "seed.toml"
    path.write_text(GOOD)
    with pytest.raises(SeedError) as info:
        create_app(ServerSettings(database_url=sqlite_url, seed_file=path))
    assert str(info.value) == (
        f"database {sqlite_url} holds the data of another seed than {path}; use another "
        "--database-url for this seed (or delete that database to start it over)")
    # The same seed again (another file with the same content) is fine.
    copy = tmp_path / "copy.toml"
    copy.write_text(GOOD)
    other = tmp_path / "other.db"
    create_app(ServerSettings(database_url=f"sqlite:///{other}", seed_file=path)
               ).state.hubspot.close()
    create_app(ServerSettings(database_url=f"sqlite:///{other}", seed_file=copy)
               ).state.hubspot.close()
    assert default_seed().fingerprint() == default_seed().fingerprint()
    assert load_seed(copy).fingerprint() == load_seed(path).fingerprint()  # content, not path
    assert load_seed(path).fingerprint() != default_seed().fingerprint()

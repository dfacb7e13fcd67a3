"""What the local HubSpot starts with: apps, portals, users, contacts.

`default_seed()` is DESIGN §4's seed (HubSpot's guide's example credentials, so its
examples work verbatim). `load_seed(path)` reads a TOML file of the same shape::

    [[apps]]
    app_id = 1                      # optional, default 1, 2, …
    name = "Quickstart App"
    description = "…"              # optional
    client_id = "7fff1e36-…"
    client_secret = "7c3ce02c-…"
    redirect_urls = ["http://localhost:3000/oauth-callback"]
    scopes = ["crm.objects.contacts.read"]
    optional_scopes = ["automation"]   # optional

    [[portals]]
    hub_id = 1234567
    hub_domain = "acme.example.com"
    hublet = "eu1"                  # optional (default: the server's, `na1`)
    scopes = ["…"]                  # optional: the scopes its products allow (default: all)
    lacks = ["automation"]          # optional: scopes it lacks
    contacts = 25                   # optional: generated sample contacts

    [[users]]
    user_id = 101                   # optional
    email = "admin@example.com"
    password = "password"
    roles = { 1234567 = "super_admin", 7654321 = "marketplace" }   # or "none"

    [[contacts]]                    # optional: explicit contacts
    hub_id = 1234567
    properties = { firstname = "Ada", lastname = "Lovelace", email = "ada@example.com" }

A malformed file raises `SeedError` whose message is one line naming the file and problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "INSTALL_ROLES",
    "ROLES",
    "Seed",
    "SeedApp",
    "SeedContact",
    "SeedError",
    "SeedPortal",
    "SeedUser",
    "default_seed",
    "load_seed",
]

DEFAULT_CLIENT_ID = "7fff1e36-2d40-4ae1-bbb1-5266d59564fb"
DEFAULT_CLIENT_SECRET = "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"
# super_admin: may install; marketplace: App Marketplace Access, may install; none: may not
# (reference §2.5).
ROLES = ("super_admin", "marketplace", "none")
INSTALL_ROLES = ("super_admin", "marketplace")


class SeedError(ConfigurationError):
    """A seed file is missing or malformed; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class SeedApp:
    app_id: int
    name: str
    client_id: str
    client_secret: str = dataclasses.field(repr=False)
    redirect_urls: tuple[str, ...]
    scopes: tuple[str, ...]
    optional_scopes: tuple[str, ...] = ()
    description: str = ""


@dataclasses.dataclass(frozen=True)
class SeedPortal:
    hub_id: int
    hub_domain: str
    hublet: str | None = None  # None: the server's hublet (ServerSettings.hublet)
    name: str = ""
    available_scopes: tuple[str, ...] | None = None  # None: every product
    missing_scopes: tuple[str, ...] = ()
    contacts: int = 0


@dataclasses.dataclass(frozen=True)
class SeedUser:
    user_id: int
    email: str
    password: str = dataclasses.field(repr=False)
    roles: dict[int, str] = dataclasses.field(default_factory=dict)
    first_name: str = ""
    last_name: str = ""


@dataclasses.dataclass(frozen=True)
class SeedContact:
    hub_id: int
    properties: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Seed:
    apps: tuple[SeedApp, ...]
    portals: tuple[SeedPortal, ...]
    users: tuple[SeedUser, ...]
    contacts: tuple[SeedContact, ...] = ()
    source: str = "default seed"

    @property
    def is_default(self) -> bool:
        return self.source == "default seed"

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the seed's content (not of where it came from): two files with
        the same apps, portals, users and contacts have the same fingerprint."""
        content = {
            "apps": [dataclasses.asdict(a) for a in self.apps],
            "portals": [dataclasses.asdict(p) for p in self.portals],
            "users": [{**dataclasses.asdict(u), "roles": sorted(u.roles.items())}
                      for u in self.users],
            "contacts": [dataclasses.asdict(c) for c in self.contacts],
        }
        raw = json.dumps(content, sort_keys=True, default=list).encode()
        return hashlib.sha256(raw).hexdigest()


def default_seed() -> Seed:
    """DESIGN §4's seed: app 1, portals 1234567 and 7654321, an admin and a viewer."""
    return Seed(
        apps=(
            SeedApp(
                app_id=1,
                name="Quickstart App",
                description="The app of HubSpot's OAuth quickstart, on the local HubSpot.",
                client_id=DEFAULT_CLIENT_ID,
                client_secret=DEFAULT_CLIENT_SECRET,
                redirect_urls=(
                    "http://localhost:3000/oauth-callback",
                    "https://www.example.com/auth-callback",
                ),
                scopes=("crm.objects.contacts.read",),
                optional_scopes=("crm.objects.contacts.write", "automation"),
            ),
        ),
        portals=(
            SeedPortal(hub_id=1234567, hub_domain="acme.example.com", name="Acme",
                       contacts=25),
            SeedPortal(hub_id=7654321, hub_domain="globex.example.com", name="Globex",
                       missing_scopes=("automation",), contacts=3),
        ),
        users=(
            SeedUser(user_id=2620001, email="admin@example.com", password="password",
                     roles={1234567: "super_admin", 7654321: "super_admin"},
                     first_name="Ada", last_name="Admin"),
            SeedUser(user_id=2620002, email="viewer@example.com", password="password",
                     roles={1234567: "none"}, first_name="Vic", last_name="Viewer"),
        ),
    )


_FIRST = ["Maria", "Brian", "Chen", "Dana", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas",
          "Kemi", "Lars", "Mona", "Nils", "Olga", "Pavel", "Qiu", "Rosa", "Sami", "Tara"]
_LAST = ["Johnson", "Halligan", "Wei", "Okafor", "Yilmaz", "Haddad", "Hopper", "Sato",
         "Moreau", "Berg", "Adeyemi", "Nilsen", "Khan", "Holm", "Ivanova"]


def sample_contacts(portal: SeedPortal) -> list[dict[str, str]]:
    """`portal.contacts` deterministic sample contacts (the first is Maria Johnson, as in
    HubSpot's sample data)."""
    found = []
    domain = portal.hub_domain
    for i in range(portal.contacts):
        first = _FIRST[i % len(_FIRST)]
        last = _LAST[(i * 7) % len(_LAST)]
        found.append({"firstname": first, "lastname": last,
                      "email": f"{first.lower()}.{last.lower()}{i + 1}@{domain}"})
    return found


def load_seed(path: str | Path) -> Seed:
    """Read a TOML seed file (shape in the module docstring). Raises `SeedError`."""
    where = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SeedError(f"seed file {where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(f"seed file {where}: cannot read it ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SeedError(f"seed file {where}: not valid TOML: {exc}") from None
    try:
        return _parse(data, where)
    except _Problem as exc:
        raise SeedError(f"seed file {where}: {exc}") from None


class _Problem(Exception):
    pass


def _table_list(data: dict, key: str) -> list[dict]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _Problem(f"'{key}' must be an array of tables ([[{key}]])")
    return value


def _get(entry: dict, where: str, key: str, kind: type | tuple, default: Any = ...) -> Any:
    if key not in entry:
        if default is ...:
            raise _Problem(f"{where}: missing '{key}'")
        return default
    value = entry[key]
    if isinstance(value, bool) and kind is int or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _Problem(f"{where}: '{key}' must be {names}, got {type(value).__name__}")
    return value


def _strings(entry: dict, where: str, key: str, default: Any = ...) -> tuple[str, ...] | None:
    value = _get(entry, where, key, list, default)
    if value is None or value is default:
        return value if value is None else tuple(value)
    if not all(isinstance(v, str) and v and not any(c.isspace() for c in v) for v in value):
        raise _Problem(f"{where}: '{key}' must be a list of non-empty strings without spaces")
    return tuple(value)


_KNOWN = {
    "apps": {"app_id", "name", "description", "client_id", "client_secret", "redirect_urls",
             "scopes", "optional_scopes"},
    "portals": {"hub_id", "hub_domain", "hublet", "name", "scopes", "lacks", "contacts"},
    "users": {"user_id", "email", "password", "roles", "first_name", "last_name"},
    "contacts": {"hub_id", "properties"},
}


def _parse(data: dict, where_file: str) -> Seed:
    unknown = set(data) - set(_KNOWN)
    if unknown:
        raise _Problem(f"unknown top-level key '{sorted(unknown)[0]}' "
                       "(expected apps, portals, users, contacts)")
    for section, keys in _KNOWN.items():
        for i, entry in enumerate(_table_list(data, section)):
            extra = set(entry) - keys
            if extra:
                raise _Problem(f"{section}[{i}]: unknown key '{sorted(extra)[0]}'")
    apps: list[SeedApp] = []
    for i, entry in enumerate(_table_list(data, "apps")):
        w = f"apps[{i}]"
        redirect_urls = _strings(entry, w, "redirect_urls")
        if not redirect_urls:
            raise _Problem(f"{w}: 'redirect_urls' must list at least one URL")
        secret = _get(entry, w, "client_secret", str)
        if len(secret) < 8:
            raise _Problem(f"{w}: 'client_secret' must be at least 8 characters")
        apps.append(SeedApp(
            app_id=_get(entry, w, "app_id", int, i + 1),
            name=_get(entry, w, "name", str),
            description=_get(entry, w, "description", str, ""),
            client_id=_get(entry, w, "client_id", str),
            client_secret=secret,
            redirect_urls=redirect_urls,
            scopes=_strings(entry, w, "scopes"),
            optional_scopes=_strings(entry, w, "optional_scopes", ()),
        ))
    if not apps:
        raise _Problem("no [[apps]]: a seed needs at least one app")
    _unique(apps, "app_id", "apps")
    _unique(apps, "client_id", "apps")
    portals: list[SeedPortal] = []
    for i, entry in enumerate(_table_list(data, "portals")):
        w = f"portals[{i}]"
        count = _get(entry, w, "contacts", int, 0)
        if count < 0 or count > 10_000:
            raise _Problem(f"{w}: 'contacts' must be between 0 and 10000")
        portals.append(SeedPortal(
            hub_id=_get(entry, w, "hub_id", int),
            hub_domain=_get(entry, w, "hub_domain", str),
            hublet=_hublet(_get(entry, w, "hublet", str, None), w),
            name=_get(entry, w, "name", str, ""),
            available_scopes=_strings(entry, w, "scopes", None),
            missing_scopes=_strings(entry, w, "lacks", ()),
            contacts=count,
        ))
    if not portals:
        raise _Problem("no [[portals]]: a seed needs at least one portal")
    _unique(portals, "hub_id", "portals")
    hub_ids = {p.hub_id for p in portals}
    users: list[SeedUser] = []
    for i, entry in enumerate(_table_list(data, "users")):
        w = f"users[{i}]"
        roles_raw = _get(entry, w, "roles", dict, {})
        roles: dict[int, str] = {}
        for key, role in roles_raw.items():
            try:
                hub_id = int(key)
            except ValueError:
                raise _Problem(f"{w}: roles key '{key}' is not a hub_id") from None
            if hub_id not in hub_ids:
                raise _Problem(f"{w}: roles names hub_id {hub_id}, which no portal has")
            if role not in ROLES:
                raise _Problem(f"{w}: role '{role}' must be one of {', '.join(ROLES)}")
            roles[hub_id] = role
        email = _get(entry, w, "email", str)
        if "@" not in email:
            raise _Problem(f"{w}: 'email' must be an e-mail address")
        password = _get(entry, w, "password", str)
        if not password:
            raise _Problem(f"{w}: 'password' must not be empty")
        users.append(SeedUser(
            user_id=_get(entry, w, "user_id", int, 2620001 + i),
            email=email.lower(), password=password, roles=roles,
            first_name=_get(entry, w, "first_name", str, ""),
            last_name=_get(entry, w, "last_name", str, ""),
        ))
    _unique(users, "user_id", "users")
    _unique(users, "email", "users")
    contacts: list[SeedContact] = []
    for i, entry in enumerate(_table_list(data, "contacts")):
        w = f"contacts[{i}]"
        hub_id = _get(entry, w, "hub_id", int)
        if hub_id not in hub_ids:
            raise _Problem(f"{w}: hub_id {hub_id} is not a portal of this seed")
        props = _get(entry, w, "properties", dict, {})
        if not all(isinstance(v, str) for v in props.values()):
            raise _Problem(f"{w}: every property value must be a string")
        contacts.append(SeedContact(hub_id=hub_id, properties=dict(props)))
    return Seed(apps=tuple(apps), portals=tuple(portals), users=tuple(users),
                contacts=tuple(contacts), source=where_file)


def _hublet(value: str | None, where: str) -> str | None:
    if value is not None and not (value.isascii() and value.isalnum() and value.islower()
                                  and 2 <= len(value) <= 6):
        raise _Problem(f"{where}: 'hublet' must look like 'na1' or 'eu1'")
    return value


def _unique(items: list, attr: str, section: str) -> None:
    seen: set = set()
    for item in items:
        value = getattr(item, attr)
        if value in seen:
            raise _Problem(f"{section}: duplicate {attr} {value!r}")
        seen.add(value)

"""HubSpot's install-time rules for the authorize step, as pure functions (no I/O).

Note for `LocalHubSpot.issue_code` (hubspot.py) and every other caller: the authorize
pages and `issue_code` run the same three steps, so a headless code and a clicked-through
code obey the same rules:

    request = AuthorizeRequest(client_id=..., redirect_uri=..., scopes=(...), ...)
        # or parse_authorize_query(query_pairs, account_id) for a raw query string
    scope_request = check_authorize_request(app_registration_or_None, request)
    grant = check_install(scope_request, portal_access_or_None)   # -> InstallGrant
    # app_registration_or_None / portal_access_or_None: None when unknown / not a member
    # store the code with grant.scopes, grant.hub_id, request.code_challenge(+_method)

Each step raises `InstallError`; its `kind` names the rule, its `message` is HubSpot's
wording (reference §2.4, §2.6). Checks run in HubSpot's order: client, then redirect URI
(until both pass, an error can only be a page: nothing may be sent to an unverified
redirect URI), then scopes and PKCE, then the chosen portal and the user's role.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from ..scopes import ALWAYS_GRANTED, parse_scope_param

__all__ = [
    "AUTHORIZE_PARAMETERS",
    "ERROR_TITLE",
    "PKCE_METHODS",
    "AppRegistration",
    "AuthorizeRequest",
    "InstallError",
    "InstallGrant",
    "PortalAccess",
    "ScopeDescription",
    "ScopeRequest",
    "authorization_redirect",
    "check_authorize_request",
    "check_install",
    "code_challenge_matches",
    "describe_scope",
    "invalid_link",
    "parse_authorize_query",
    "validate_redirect_url",
]

ERROR_TITLE = "Couldn't complete the connection"

# The parameters the authorize URL understands (reference §2.2); others are ignored.
AUTHORIZE_PARAMETERS = (
    "client_id",
    "redirect_uri",
    "scope",
    "optional_scope",
    "state",
    "response_type",
    "code_challenge",
    "code_challenge_method",
)
PKCE_METHODS = ("S256", "plain")
# RFC 7636 §4.2: 43-128 characters of the unreserved set.
# Always `fullmatch`: `$` with `match` also accepts a trailing newline.
_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# A bound on every parameter: a state of a few KiB is already unusual (UNCONFIRMED at
# HubSpot, which documents no limit).
MAX_PARAMETER_LENGTH = 4096

_CONTACT_DEVELOPER = "Please contact the app developer."


class InstallError(Exception):
    """An authorize request HubSpot refuses with a "Couldn't complete the connection" page.

    **Attributes:** `kind` (the rule, e.g. ``"insufficient_scopes"``), `message` (HubSpot's
    wording, shown to the user), `hint` (what to do next), `details` (list of lines for the
    app developer, e.g. the missing scopes), `status_code` (HTTP status of the page), and
    `title` (always ``"Couldn't complete the connection"``, reference §2.6).

    Kinds: ``unknown_client``, ``missing_parameter``, ``invalid_parameter``,
    ``redirect_uri_mismatch``, ``redirect_uri_not_allowed``, ``insufficient_scopes``,
    ``scope_mismatch``, ``invalid_pkce``, ``account_not_found``, ``portal_lacks_product``,
    ``no_permission``, ``invalid_link``.
    """

    title = ERROR_TITLE

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        hint: str = "",
        details: Iterable[str] = (),
        status_code: int = 400,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint
        self.details = list(details)
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"InstallError(kind={self.kind!r}, message={self.message!r})"


# --- value types --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AppRegistration:
    """What the authorize step needs to know about an app (DESIGN §4 "apps").

    `scopes` are the app's required scopes, `optional_scopes` its optional ones; `oauth`
    need not be listed (it is always granted, reference §10).
    """

    client_id: str
    name: str
    redirect_urls: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    optional_scopes: tuple[str, ...] = ()
    description: str = ""
    app_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """The parameters of one authorize URL, already URL-decoded.

    `scopes`/`optional_scopes` are None when the parameter was absent. `account_id` is the
    hub id pinned by ``/oauth/{accountId}/authorize``, else None.
    """

    client_id: str | None
    redirect_uri: str | None
    scopes: tuple[str, ...] | None
    optional_scopes: tuple[str, ...] = ()
    state: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    account_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, for carrying the request between pages."""
        data = dataclasses.asdict(self)
        for name in ("scopes", "optional_scopes"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthorizeRequest:
        """Inverse of `to_dict`; raises InstallError(invalid_link) on a malformed mapping."""
        try:
            scopes = data["scopes"]
            return cls(
                client_id=data["client_id"],
                redirect_uri=data["redirect_uri"],
                scopes=None if scopes is None else tuple(scopes),
                optional_scopes=tuple(data["optional_scopes"]),
                state=data["state"],
                code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"],
                account_id=data["account_id"],
            )
        except (KeyError, TypeError) as exc:
            raise _invalid_link() from exc


@dataclasses.dataclass(frozen=True, slots=True)
class ScopeRequest:
    """A request that passed `check_authorize_request`: its app, and the scopes it asks for.

    `required` always starts with ``oauth``; `optional` are the optional scopes asked for.
    """

    app: AppRegistration
    request: AuthorizeRequest
    required: tuple[str, ...]
    optional: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class PortalAccess:
    """One HubSpot account (portal) as seen by the installing user.

    `available_scopes` are the scopes the portal's products allow (None: every product),
    `missing_scopes` scopes it lacks even then (the `portals` table's two columns).
    `may_install` is True when the user is a super admin of the portal or has App
    Marketplace Access there (reference §2.5, [CL-PERM]).
    """

    hub_id: int
    hub_domain: str
    may_install: bool
    available_scopes: frozenset[str] | None = None
    missing_scopes: frozenset[str] = frozenset()
    name: str = ""

    def has_scope(self, scope: str) -> bool:
        """Whether the portal's products allow `scope` (``oauth`` always)."""
        if scope == ALWAYS_GRANTED:
            return True
        if scope in self.missing_scopes:
            return False
        return self.available_scopes is None or scope in self.available_scopes


@dataclasses.dataclass(frozen=True, slots=True)
class InstallGrant:
    """What the user may grant in one portal: `scopes` (``oauth`` first, then required,
    then the optional scopes the portal has) and `dropped` (optional scopes it lacks)."""

    hub_id: int
    scopes: tuple[str, ...]
    dropped: tuple[str, ...]


# --- the rules ----------------------------------------------------------------------------


def parse_authorize_query(
    pairs: Iterable[tuple[str, str]], account_id: str | None = None
) -> AuthorizeRequest:
    """Build an `AuthorizeRequest` from decoded query pairs (and the path's accountId).

    Scopes are split with `hubspot_oauth.scopes.parse_scope_param` (space, ``%20`` or
    ``+`` once decoded). `response_type` is accepted and ignored (reference §2.2,
    UNCONFIRMED there). Raises InstallError(``invalid_parameter``) for a repeated known
    parameter, one longer than 4096 characters, or an accountId that is not a number.
    Missing parameters are not checked here: `check_authorize_request` does, in order.
    """
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name not in AUTHORIZE_PARAMETERS:
            continue
        if name in seen:
            raise InstallError(
                "invalid_parameter",
                f"Authorization failed because the install URL repeats the parameter "
                f"'{name}'. {_CONTACT_DEVELOPER}",
                hint="The install link is malformed; the app developer has to fix it.",
                details=[f"'{name}' appears more than once; send each parameter once."],
            )
        if len(value) > MAX_PARAMETER_LENGTH:
            raise InstallError(
                "invalid_parameter",
                f"Authorization failed because the parameter '{name}' is too long. "
                f"{_CONTACT_DEVELOPER}",
                hint="The install link is malformed; the app developer has to fix it.",
                details=[f"'{name}' may be at most {MAX_PARAMETER_LENGTH} characters."],
            )
        seen[name] = value
    pinned: int | None = None
    if account_id is not None:
        if not account_id.isascii() or not account_id.isdigit() or len(account_id) > 18:
            raise InstallError(
                "invalid_parameter",
                "This install link is not valid: the account ID in its path is not a "
                "HubSpot account ID.",
                hint="Use the app's install link without the account ID, or with the "
                "numeric ID of your HubSpot account.",
            )
        pinned = int(account_id)
    scope = seen.get("scope")
    return AuthorizeRequest(
        client_id=seen.get("client_id") or None,
        redirect_uri=seen.get("redirect_uri") or None,
        scopes=None if scope is None else parse_scope_param(scope),
        optional_scopes=parse_scope_param(seen.get("optional_scope")),
        state=seen.get("state"),
        code_challenge=seen.get("code_challenge") or None,
        code_challenge_method=seen.get("code_challenge_method") or None,
        account_id=pinned,
    )


def validate_redirect_url(url: str) -> None:
    """Raise InstallError(``redirect_uri_not_allowed``) unless HubSpot accepts `url` as a
    redirect URL: ``https``, or ``http`` only on ``localhost``; a domain name, never an IP
    address (reference §2.4); no fragment (RFC 6749 §3.1.2). Usable at app registration.
    """
    reason = _redirect_url_problem(url)
    if reason:
        raise InstallError(
            "redirect_uri_not_allowed",
            f"Authorization failed because the redirect URL '{url}' is not allowed: "
            f"{reason}. {_CONTACT_DEVELOPER}",
            hint="The app is set up with a redirect URL HubSpot does not accept; the app "
            "developer has to register an https URL (http only for localhost).",
            details=[
                "Redirect URLs must use https, except http://localhost for local "
                "development; IP addresses (even 127.0.0.1) are not supported."
            ],
        )


def _redirect_url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "it is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "it must be an absolute http(s) URL"
    if parts.fragment or "#" in url:
        return "it must not contain a fragment"
    if parts.username is not None or parts.password is not None:
        return "it must not contain user information"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return "IP addresses are not supported, use a domain name such as localhost"
    if parts.scheme == "http" and host != "localhost":
        return "http is only allowed for localhost, use https"
    return None


def check_authorize_request(app: AppRegistration | None, request: AuthorizeRequest) -> ScopeRequest:
    """Check an authorize request against its app, in HubSpot's order.

    `app` is the registration found for ``request.client_id`` (None when unknown).
    Rules: client_id present and known; redirect_uri present and exactly equal (string
    comparison, RFC 6749 §3.1.2.3 / reference §2.4) to a registered URL of an allowed form;
    `scope` present and holding every required scope, none of them in `optional_scope`
    ("insufficient scopes"); no scope the app does not configure, no optional scope in
    `scope` ("scope mismatch"); ``oauth`` allowed anywhere; PKCE method S256 or plain
    (RFC 7636 §4.3: plain when a challenge has no method) with a well-formed challenge.
    Returns a `ScopeRequest`; raises `InstallError`.
    """
    if not request.client_id:
        raise _missing("client_id")
    if app is None or app.client_id != request.client_id:
        raise InstallError(
            "unknown_client",
            "Authorization failed because the app's client ID is not recognized. "
            + _CONTACT_DEVELOPER,
            hint="The install link names an app that does not exist on this HubSpot. "
            "Check the client_id in the app's settings.",
            details=[f"No app has client_id '{request.client_id}'."],
            status_code=400,
        )
    if not request.redirect_uri:
        raise _missing("redirect_uri")
    if request.redirect_uri not in app.redirect_urls:
        raise InstallError(
            "redirect_uri_mismatch",
            f"Authorization failed as the redirect URL '{request.redirect_uri}' doesn't "
            "match the app's registered redirect URL. " + _CONTACT_DEVELOPER,
            hint="The redirect_uri must equal a redirect URL registered on the app, "
            "character for character (scheme, host, port, path and trailing slash).",
            details=["Registered redirect URLs: " + ", ".join(app.redirect_urls)],
        )
    validate_redirect_url(request.redirect_uri)

    if request.scopes is None:
        raise _missing("scope")
    required = tuple(s for s in app.scopes if s != ALWAYS_GRANTED)
    optional_config = tuple(s for s in app.optional_scopes if s != ALWAYS_GRANTED)
    asked = tuple(s for s in request.scopes if s != ALWAYS_GRANTED)
    asked_optional = tuple(s for s in request.optional_scopes if s != ALWAYS_GRANTED)

    missing = [s for s in required if s not in asked]
    misplaced = [s for s in required if s in asked_optional]
    if missing or misplaced:
        details = []
        if missing:
            details.append("Required scopes missing from 'scope': " + " ".join(missing))
        if misplaced:
            details.append(
                "Required scopes put in 'optional_scope' (they belong in 'scope'): "
                + " ".join(misplaced)
            )
        raise InstallError(
            "insufficient_scopes",
            "Authorization failed because the provided scopes are insufficient. "
            + _CONTACT_DEVELOPER,
            hint="The install link must ask for every scope the app requires in its "
            "'scope' parameter.",
            details=details,
        )

    optional_in_scope = [s for s in asked if s in optional_config]
    unknown = [s for s in asked if s not in required and s not in optional_config]
    unknown += [s for s in asked_optional if s not in optional_config and s not in unknown]
    if optional_in_scope or unknown:
        details = []
        if optional_in_scope:
            details.append(
                "Optional scopes put in 'scope' (they belong in 'optional_scope'): "
                + " ".join(optional_in_scope)
            )
        if unknown:
            details.append("Scopes the app does not configure: " + " ".join(unknown))
        raise InstallError(
            "scope_mismatch",
            "Authorization failed because there is a mismatch between the scopes in the "
            "install URL and the app's configured scopes. " + _CONTACT_DEVELOPER,
            hint="The install link's 'scope' must list exactly the app's required scopes "
            "and 'optional_scope' only scopes the app configures as optional.",
            details=details,
        )

    _check_pkce(request)
    return ScopeRequest(
        app=app,
        request=request,
        required=(ALWAYS_GRANTED, *required),
        optional=asked_optional,
    )


def _check_pkce(request: AuthorizeRequest) -> None:
    method = request.code_challenge_method
    if request.code_challenge is None:
        if method is not None:
            raise _pkce_error(
                "code_challenge_method was sent without a code_challenge.",
            )
        return
    if method is not None and method not in PKCE_METHODS:
        raise _pkce_error(
            f"code_challenge_method '{method}' is not supported; use S256 (or plain)."
        )
    if not _CODE_CHALLENGE.fullmatch(request.code_challenge):
        raise _pkce_error(
            "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ "
            "(RFC 7636 §4.2)."
        )


def _pkce_error(detail: str) -> InstallError:
    return InstallError(
        "invalid_pkce",
        "Authorization failed because the install URL's PKCE parameters are invalid. "
        + _CONTACT_DEVELOPER,
        hint="The app sent a PKCE code challenge HubSpot cannot use.",
        details=[detail],
    )


def check_install(scope_request: ScopeRequest, portal: PortalAccess | None) -> InstallGrant:
    """Check that the user may install the app into `portal`, and what they grant there.

    `portal` is None when the user does not belong to the chosen (or pinned) account.
    Rules (reference §2.5-2.6, §10): the user must be a super admin or have App Marketplace
    Access ("no_permission", 403); every required scope's product must be in the portal
    ("portal_lacks_product"); optional scopes the portal lacks are dropped silently.
    The permission check runs first (HubSpot's order is UNCONFIRMED), so a user who may not
    install learns nothing about the portal's products.
    """
    pinned = scope_request.request.account_id
    if portal is None:
        account = f" {pinned}" if pinned is not None else ""
        raise InstallError(
            "account_not_found",
            f"You don't have access to the HubSpot account{account}.",
            hint="Sign in as a user of that account, or use the app's install link "
            "without an account ID to choose one of your accounts.",
            status_code=403,
        )
    if not portal.may_install:
        raise InstallError(
            "no_permission",
            "You do not have the correct role to grant these permissions. Please contact "
            "your administrator.",
            hint="Installing an app needs a super admin, or a user with the App "
            "Marketplace Access permission, in the HubSpot account "
            f"{portal.hub_domain} ({portal.hub_id}).",
            status_code=403,
        )
    lacking = [s for s in scope_request.required if not portal.has_scope(s)]
    if lacking:
        raise InstallError(
            "portal_lacks_product",
            "This account doesn't have access to some HubSpot features that are required "
            "by this app.",
            hint="Choose another HubSpot account, or ask the app developer whether these "
            "features can be made optional.",
            details=[
                f"The account {portal.hub_domain} ({portal.hub_id}) lacks the products "
                "for: " + " ".join(lacking)
            ],
            status_code=403,
        )
    kept = tuple(s for s in scope_request.optional if portal.has_scope(s))
    dropped = tuple(s for s in scope_request.optional if not portal.has_scope(s))
    scopes: list[str] = []
    for scope in (*scope_request.required, *kept):
        if scope not in scopes:
            scopes.append(scope)
    return InstallGrant(hub_id=portal.hub_id, scopes=tuple(scopes), dropped=dropped)


def _missing(name: str) -> InstallError:
    return InstallError(
        "missing_parameter",
        f"Authorization failed because the install URL is missing the required parameter "
        f"'{name}'. {_CONTACT_DEVELOPER}",
        hint="The install link must carry client_id, redirect_uri and scope.",
        details=[f"Add '{name}' to the authorize URL."],
    )


def _invalid_link() -> InstallError:
    return InstallError(
        "invalid_link",
        "This install link is no longer valid. Please visit HubSpot's App Marketplace to "
        "install this app.",
        hint="Start the connection again from the app.",
    )


def invalid_link() -> InstallError:
    """The "install link is no longer valid" error (reference §2.6), for expired or
    tampered authorization state between the pages."""
    return _invalid_link()


def authorization_redirect(redirect_uri: str, code: str, state: str | None) -> str:
    """`redirect_uri` with ``code`` (and ``state`` when the request had one) appended.

    The redirect URI's own query is kept as it is (RFC 6749 §3.1.2); both values are
    percent-encoded with `urllib.parse.quote` (``safe=""``), so a client decoding the
    query gets `state` back byte for byte (RFC 6749 §4.1.2). An empty state is echoed
    as ``state=``.
    """
    base, _, fragment = redirect_uri.partition("#")  # registered URLs have none; be safe
    added = "code=" + quote(code, safe="")
    if state is not None:
        added += "&state=" + quote(state, safe="")
    joiner = "?"
    if "?" in base:
        joiner = "" if base.endswith(("?", "&")) else "&"
    return base + joiner + added


def code_challenge_matches(verifier: str, challenge: str, method: str | None) -> bool:
    """RFC 7636 §4.6: does `verifier` answer `challenge` (method S256, or plain/None)?

    Constant-time comparison. A verifier that is not 43-128 unreserved characters never
    matches (RFC 7636 §4.1).
    """
    if not _CODE_CHALLENGE.fullmatch(verifier):
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    elif method in (None, "plain"):
        computed = verifier
    else:
        return False
    return hmac.compare_digest(computed.encode("ascii"), challenge.encode("ascii"))


# --- scopes in words ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ScopeDescription:
    """How the consent page shows a scope: `group` (e.g. "CRM") and `text`."""

    scope: str
    group: str
    text: str


# Wording modelled on HubSpot's consent screen and scope list (developers.hubspot.com
# scopes reference); the exact current labels are UNCONFIRMED (reference §14 item 20).
_SCOPE_TEXT: dict[str, tuple[str, str]] = {
    "oauth": ("Basic", "Verify your identity and the HubSpot account you connect"),
    "automation": ("Automation", "View, create and edit workflows"),
    "content": ("Marketing", "View and edit website pages, blog posts and landing pages"),
    "forms": ("Marketing", "View and submit forms"),
    "files": ("Marketing", "View and upload files in the file manager"),
    "tickets": ("Service", "View and edit tickets"),
    "e-commerce": ("Commerce", "View and edit products and line items"),
    "timeline": ("CRM", "Add events to the timeline of CRM records"),
    "transactional-email": ("Marketing", "Send transactional email"),
    "sales-email-read": ("Sales", "Read the content of one-to-one sales emails"),
    "conversations.read": ("Service", "View conversation threads in the inbox"),
    "conversations.write": ("Service", "Send and edit messages in conversation threads"),
    "settings.users.read": ("Settings", "View the users of the account"),
    "settings.users.write": ("Settings", "Add, edit and remove users of the account"),
    "crm.objects.owners.read": ("CRM", "View the record owners of the account"),
    "crm.import": ("CRM", "Import records into the CRM"),
    "crm.export": ("CRM", "Export records from the CRM"),
}
_CRM_RULE = re.compile(r"crm\.(objects|schemas|lists)\.(?:([a-z_]+)\.)?(read|write)")


def describe_scope(scope: str) -> ScopeDescription:
    """The consent-page wording for `scope`.

    Known scopes have fixed text; ``crm.objects.<type>.read|write``,
    ``crm.schemas.<type>.read|write`` and ``crm.lists.read|write`` are described from their
    parts; any other scope is shown by name.
    """
    if scope in _SCOPE_TEXT:
        group, text = _SCOPE_TEXT[scope]
        return ScopeDescription(scope, group, text)
    match = _CRM_RULE.fullmatch(scope)
    if match:
        kind, object_type, access = match.groups()
        noun = (object_type or "").replace("_", " ")
        if kind == "objects":
            text = (
                f"View properties and other details about {noun}"
                if access == "read"
                else f"Create, delete, or make changes to {noun}"
            )
        elif kind == "schemas":
            text = (
                f"View the property settings of {noun}"
                if access == "read"
                else f"Create, delete, or make changes to the property settings of {noun}"
            )
        else:
            text = (
                "View lists of records"
                if access == "read"
                else "Create, delete, or make changes to lists of records"
            )
        return ScopeDescription(scope, "CRM", text)
    return ScopeDescription(scope, "Other", scope)

"""A model of the grant rules (RFC 6749 §4.1.2, §6, §10.4-10.5; RFC 7009; RFC 9700
§4.14.2; reference §4.5) checked against the local HubSpot by a Hypothesis state machine:
random sequences of installs, code exchanges and replays, refreshes (rotation off, rotate,
strict), revocations, v1 deletes, uninstalls, API calls, introspections and clock moves.
After every step the server's answers match the model, and each token family has at most
one live refresh token."""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hubspot_oauth.testing import local_hubspot
from hubspot_oauth.testing.local import LocalHubSpotHandle
from tests.security.harness import sqlite_path

CODE_TTL = 300
ACCESS_TTL = 1800


@dataclass
class Code:
    issued: float
    state: str = "unused"  # unused | consumed | dropped
    family: int | None = None


@dataclass
class Refresh:
    family: int
    state: str = "live"  # live | retired | revoked


@dataclass
class Access:
    family: int
    issued: float
    revoked: bool = False


class GrantMachine(RuleBasedStateMachine):
    codes = Bundle("codes")
    refresh_tokens = Bundle("refresh_tokens")

    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        self.hubspot: LocalHubSpotHandle | None = None
        self.http: httpx.Client | None = None
        self.now = 0.0
        self.mode = "off"
        self.code: dict[str, Code] = {}
        self.rt: dict[str, Refresh] = {}
        self.at: dict[str, Access] = {}
        self.families = 0

    # -- set-up ----------------------------------------------------------------------

    MODE = "off"

    @initialize()
    def start(self) -> None:
        self.mode = self.MODE
        self.hubspot = self.stack.enter_context(
            local_hubspot(refresh_token_rotation=self.MODE))
        self.http = self.stack.enter_context(self.hubspot.http_client())

    def teardown(self) -> None:
        self.stack.close()

    # -- helpers -----------------------------------------------------------------------

    def _post(self, path: str, **fields: str) -> httpx.Response:
        assert self.hubspot is not None and self.http is not None
        data = {"client_id": self.hubspot.client_id,
                "client_secret": self.hubspot.client_secret, **fields}
        return self.http.post(path, data=data)

    def _revoke_family(self, family: int) -> None:
        for token in self.rt.values():
            if token.family == family:
                token.state = "revoked"
        for token in self.at.values():
            if token.family == family:
                token.revoked = True

    def _at_active(self, token: str) -> bool:
        info = self.at.get(token)
        return info is not None and not info.revoked and self.now < info.issued + ACCESS_TTL

    def _new_pair(self, body: dict, family: int) -> tuple[str, str]:
        self.rt.setdefault(body["refresh_token"], Refresh(family))
        self.at[body["access_token"]] = Access(family, self.now)
        return body["access_token"], body["refresh_token"]

    # -- rules ---------------------------------------------------------------------------

    @rule(target=codes)
    def install(self) -> str:
        assert self.hubspot is not None
        code = self.hubspot.authorize()
        self.code[code] = Code(self.now)
        return code

    @rule(target=refresh_tokens)
    def connect(self) -> str:
        """Install and exchange at once: the path most sequences should build on."""
        return self.exchange(self.install())

    @rule(target=refresh_tokens, code=codes)
    def exchange(self, code: str) -> str:
        assert self.hubspot is not None
        response = self._post("/oauth/v3/token", grant_type="authorization_code", code=code,
                              redirect_uri=self.hubspot.redirect_uri)
        known = self.code.get(code)
        if known is None or known.state == "dropped":
            assert response.status_code == 400 and response.json()["status"] == "BAD_AUTH_CODE"
            return code
        if known.state == "consumed":
            assert response.status_code == 400 and response.json()["status"] == "BAD_AUTH_CODE"
            assert known.family is not None
            self._revoke_family(known.family)  # RFC 6749 §4.1.2: replay revokes
            return code
        if self.now >= known.issued + CODE_TTL:
            assert response.status_code == 400
            assert response.json()["status"] == "EXPIRED_AUTH_CODE"
            return code
        assert response.status_code == 200, response.text
        self.families += 1
        known.state, known.family = "consumed", self.families
        return self._new_pair(response.json(), self.families)[1]

    @rule(target=refresh_tokens, token=refresh_tokens)
    def refresh(self, token: str) -> str:
        response = self._post("/oauth/v3/token", grant_type="refresh_token",
                              refresh_token=token)
        known = self.rt.get(token)
        if known is None or known.state == "revoked":
            assert response.status_code == 400
            assert response.json()["status"] == "BAD_REFRESH_TOKEN"
            return token
        if known.state == "retired":
            assert response.status_code == 400
            assert response.json()["status"] == "BAD_REFRESH_TOKEN"
            if self.mode == "strict":
                self._revoke_family(known.family)  # RFC 9700 §4.14.2
            return token
        assert response.status_code == 200, response.text
        body = response.json()
        if self.mode == "off":
            assert body["refresh_token"] == token  # HubSpot: the same refresh token back
        else:
            assert body["refresh_token"] != token
            known.state = "retired"
        return self._new_pair(body, known.family)[1]

    @rule(token=refresh_tokens)
    def revoke_refresh_token(self, token: str) -> None:
        response = self._post("/oauth/v3/token/revoke", token=token,
                              token_type_hint="refresh_token")
        assert response.status_code == 200  # RFC 7009 §2.2, also for unknown tokens
        known = self.rt.get(token)
        if known is not None:
            self._revoke_family(known.family)  # revoke_cascades (default)

    def _any_access_token(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.at)))

    @precondition(lambda self: bool(self.at))
    @rule(data=st.data())
    def revoke_access_token(self, data: st.DataObject) -> None:
        token = self._any_access_token(data)
        response = self._post("/oauth/v3/token/revoke", token=token)
        assert response.status_code == 200
        if token in self.at:
            self.at[token].revoked = True

    @rule(token=refresh_tokens)
    def delete_v1(self, token: str) -> None:
        assert self.http is not None
        response = self.http.delete(f"/oauth/v1/refresh-tokens/{token}")
        known = self.rt.get(token)
        if known is not None and known.state == "live":
            assert response.status_code == 204
            known.state = "revoked"  # only the refresh token (reference §4.5)
        else:
            assert response.status_code == 404

    @precondition(lambda self: bool(self.at))
    @rule(data=st.data())
    def call_api(self, data: st.DataObject) -> None:
        token = self._any_access_token(data)
        assert self.http is not None
        response = self.http.get("/crm/v3/objects/contacts",
                                 headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == (200 if self._at_active(token) else 401), (
            response.status_code, response.text[:200])

    @precondition(lambda self: bool(self.at))
    @rule(data=st.data(), refresh_token=refresh_tokens, which=st.booleans())
    def introspect(self, data: st.DataObject, refresh_token: str, which: bool) -> None:
        token = self._any_access_token(data) if which else refresh_token
        response = self._post("/oauth/v3/token/introspect", token=token)
        assert response.status_code == 200
        if token in self.at:
            expected = self._at_active(token)
        else:
            known = self.rt.get(token)
            expected = known is not None and known.state == "live"
        assert response.json()["active"] is expected, (token[:12], response.json())

    @rule(seconds=st.sampled_from([5, 5, 5, 120, CODE_TTL + 1, ACCESS_TTL + 1]))
    def advance(self, seconds: int) -> None:
        assert self.hubspot is not None
        self.hubspot.advance(seconds)
        self.now += seconds

    @precondition(lambda self: len(self.rt) >= 4)  # now and then, not all the time
    @rule()
    def uninstall(self) -> None:
        assert self.hubspot is not None
        self.hubspot.uninstall()
        for token in self.rt.values():
            token.state = "revoked"
        for access in self.at.values():
            access.revoked = True
        for code in self.code.values():
            if code.state == "unused":
                code.state = "dropped"

    @invariant()
    def one_live_refresh_token_per_family(self) -> None:
        if self.hubspot is None:
            return
        db = sqlite3.connect(f"file:{sqlite_path(self.hubspot.database_url)}?mode=ro",
                             uri=True)
        try:
            counts = db.execute(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM refresh_tokens WHERE "
                "retired_at IS NULL AND revoked_at IS NULL GROUP BY family_id)").fetchone()[0]
        finally:
            db.close()
        assert counts in (None, 0, 1)


SETTINGS = settings(
    max_examples=20, stateful_step_count=30, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class RotationOff(GrantMachine):
    MODE = "off"  # HubSpot: the same refresh token back


class RotationRotate(GrantMachine):
    MODE = "rotate"


class RotationStrict(GrantMachine):
    MODE = "strict"  # RFC 9700 §4.14.2: reuse revokes the family


RotationOff.TestCase.settings = SETTINGS
RotationRotate.TestCase.settings = SETTINGS
RotationStrict.TestCase.settings = SETTINGS
TestGrantRulesRotationOff = RotationOff.TestCase
TestGrantRulesRotationRotate = RotationRotate.TestCase
TestGrantRulesRotationStrict = RotationStrict.TestCase

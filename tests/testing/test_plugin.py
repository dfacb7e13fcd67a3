"""The pytest plugin, used the way a user uses it: test files written into a fresh project
and run by `python -m pytest` with the plugin loaded from its installed entry point."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip()


FULL_FLOW = src(
    '''
    import httpx

    def test_full_flow(hubspot):
        code = hubspot.authorize(user="admin@example.com", portal=1234567)
        client = hubspot.oauth_client()
        token = client.exchange_code(code)
        assert token.hub_id == 1234567
        assert "crm.objects.contacts.read" in token.scopes

        with httpx.Client(base_url=hubspot.base_url, transport=hubspot.transport) as api:
            response = api.get("/crm/v3/objects/contacts",
                               headers={"Authorization": f"Bearer {token.access_token}"})
            assert response.status_code == 200
            assert response.json()["results"]

            hubspot.advance(1800)
            expired = api.get("/crm/v3/objects/contacts",
                              headers={"Authorization": f"Bearer {token.access_token}"})
            assert expired.status_code == 401
            assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"

            fresh = client.refresh(token.refresh_token)
            again = api.get("/crm/v3/objects/contacts",
                            headers={"Authorization": f"Bearer {fresh.access_token}"})
            assert again.status_code == 200

        stats = hubspot.stats()
        assert stats["token"]["authorization_code"]["ok"] == 1
        assert stats["token"]["refresh_token"]["ok"] == 1
        assert hubspot.refresh_count() == 1

    def test_token_store_refreshes_through_auth(hubspot):
        store = hubspot.token_store()
        token = hubspot.connect(store)
        key = str(token.hub_id)
        with hubspot.http_client(auth=store.auth(key)) as api:
            for _ in range(3):
                assert api.get("/crm/v3/objects/contacts").status_code == 200
                hubspot.advance(1000)
        assert hubspot.refresh_count() == 1
        assert store.get(key).access_token != token.access_token
    '''
)



ASYNC_FLOW = src(
    '''
    import httpx
    import pytest

    @pytest.fixture
    def anyio_backend():
        return "asyncio"

    @pytest.mark.anyio
    async def test_async_client_and_async_httpx(hubspot):
        client = hubspot.async_oauth_client()
        token = await client.exchange_code(hubspot.authorize())
        async with httpx.AsyncClient(base_url=hubspot.base_url,
                                     transport=hubspot.transport) as api:
            response = await api.get(
                "/account-info/v3/details",
                headers={"Authorization": f"Bearer {token.access_token}"},
            )
        assert response.status_code == 200
        assert response.json()["portalId"] == 1234567
    '''
)



ISOLATION = src(
    '''
    import json
    import pathlib
    from datetime import UTC, datetime, timedelta

    import pytest
    from hubspot_oauth import InvalidClientError

    SHARED = pathlib.Path(__file__).with_name("first-test.json")

    def test_first_moves_the_clock_and_uninstalls(hubspot):
        token = hubspot.connect()
        hubspot.advance(10 * 86400)
        hubspot.uninstall(portal=1234567)
        SHARED.write_text(json.dumps({
            "client_id": hubspot.client_id,
            "client_secret": hubspot.client_secret,
            "refresh_token": token.refresh_token,
            "database_url": hubspot.database_url,
        }))

    def test_second_has_its_own_app_clock_and_database(hubspot):
        first = json.loads(SHARED.read_text())
        assert hubspot.client_id != first["client_id"]
        assert hubspot.database_url != first["database_url"]
        # The clock is this test's own: not ten days ahead.
        assert abs(hubspot.now() - datetime.now(UTC)) < timedelta(minutes=5)
        # The first test's app does not exist here.
        stranger = hubspot.oauth_client(client_id=first["client_id"],
                                        client_secret=first["client_secret"])
        with pytest.raises(InvalidClientError):
            stranger.refresh(first["refresh_token"])
        # Nothing was uninstalled here, nothing counted yet.
        assert hubspot.stats()["token"]["refresh_token"]["ok"] == 0
        assert hubspot.connect().hub_id == 1234567
    '''
)



MARKERS = src(
    '''
    import pytest

    pytestmark = pytest.mark.hubspot(access_token_ttl=600)

    def test_module_marker_applies(hubspot):
        assert hubspot.connect().expires_in == 600

    @pytest.mark.hubspot(refresh_token_rotation="rotate", scopes=["crm.objects.contacts.read",
                                                                   "crm.objects.contacts.write"],
                         optional_scopes=[])
    def test_closest_marker_adds_options(hubspot):
        token = hubspot.connect()
        assert token.expires_in == 600
        assert "crm.objects.contacts.write" in token.scopes
        assert "automation" not in token.scopes
        rotated = hubspot.oauth_client().refresh(token.refresh_token)
        assert rotated.refresh_token != token.refresh_token

    @pytest.mark.hubspot(access_token_ttl=60)
    def test_closest_marker_wins(hubspot):
        assert hubspot.connect().expires_in == 60
    '''
)


MARKER_MISTAKES = src(
    '''
    import pytest

    @pytest.mark.hubspot(acess_token_ttl=60)
    def test_typo(hubspot):
        pass

    @pytest.mark.hubspot(refresh_token_rotation="sometimes")
    def test_bad_value(hubspot):
        pass
    '''
)


DIRECTORY_OPTIONS = src(
    '''
    import pytest

    @pytest.fixture
    def hubspot_options(hubspot_options):
        # A whole directory on short-lived tokens; markers still add their options.
        return {"access_token_ttl": 120, **hubspot_options}
    '''
)

DIRECTORY_TESTS = src(
    '''
    import pytest

    def test_directory_option(hubspot):
        assert hubspot.connect().expires_in == 120

    @pytest.mark.hubspot(access_token_ttl=30)
    def test_marker_beats_directory(hubspot):
        assert hubspot.connect().expires_in == 30
    '''
)


def test_marker_configures_server_and_app(run_user_tests) -> None:
    # --strict-markers: the plugin registers its marker.
    result = run_user_tests({"test_markers": MARKERS, "test_mistakes": MARKER_MISTAKES,
                             "short/conftest": DIRECTORY_OPTIONS,
                             "short/test_short": DIRECTORY_TESTS},
                            "--strict-markers")
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.re_match_lines([
        r"^local HubSpot: unknown local HubSpot option 'acess_token_ttl'; .*"
        r"access_token_ttl.*$",
        r"^local HubSpot: refresh_token_rotation must be one of off, rotate, strict, "
        r"got 'sometimes'$",
    ])
    assert "Traceback" not in result.stdout.str()


FAULTS = src(
    '''
    import pytest
    from hubspot_oauth import RetryableError, ServerError
    from hubspot_oauth.client.retry import NO_RETRY

    def test_token_endpoint_outage(hubspot):
        client = hubspot.oauth_client(retry=NO_RETRY)
        token = client.exchange_code(hubspot.authorize())
        hubspot.fail_next("token", "server_error")
        with pytest.raises(ServerError) as caught:
            client.refresh(token.refresh_token)
        assert isinstance(caught.value, RetryableError)
        assert client.refresh(token.refresh_token).access_token
        assert hubspot.stats()["token"]["refresh_token"] == {"ok": 1, "error": 1}

    def test_api_faults_are_queued_in_order(hubspot):
        token = hubspot.connect()
        hubspot.fail_next("api", "rate_limit", times=2)
        with hubspot.http_client(headers={"Authorization": f"Bearer {token.access_token}"}) as api:
            assert api.get("/crm/v3/objects/contacts").status_code == 429
            assert api.get("/crm/v3/objects/contacts").status_code == 429
            assert api.get("/crm/v3/objects/contacts").status_code == 200
    '''
)



def not_passed(result, files: dict[str, str]) -> list[str]:
    """The `file::test` names of `files` that did not pass (the run needs ``-rA``)."""
    output = result.stdout.str()
    return [
        f"{name}.py::{test}"
        for name, source in files.items()
        for test in re.findall(r"^(?:async )?def (test_\w+)", source, re.MULTILINE)
        if f"PASSED {name}.py::{test}" not in output
    ]


def test_in_process_user_suites(run_user_tests) -> None:
    # Four user test files in one run (one interpreter start): the whole flow with
    # OAuthClient, TokenStore and plain httpx; async clients; isolation between tests;
    # queued faults.
    files = {"test_flow": FULL_FLOW, "test_async": ASYNC_FLOW, "test_isolation": ISOLATION,
             "test_faults": FAULTS}
    result = run_user_tests(files, "-rA", "-p", "no:randomly")
    assert not_passed(result, files) == []
    result.assert_outcomes(passed=7)


REQUESTS_AND_SDK = src(
    '''
    import os
    import subprocess
    import sys

    import requests
    from hubspot import HubSpot

    def test_requests_over_a_real_socket(hubspot_server):
        assert hubspot_server.base_url.startswith("http://127.0.0.1:")
        code = hubspot_server.authorize()
        answer = requests.post(
            f"{hubspot_server.base_url}/oauth/v3/token",
            data={
                "grant_type": "authorization_code",
                "client_id": hubspot_server.client_id,
                "client_secret": hubspot_server.client_secret,
                "redirect_uri": hubspot_server.redirect_uri,
                "code": code,
            },
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        access_token = answer.json()["access_token"]
        contacts = requests.get(
            f"{hubspot_server.base_url}/crm/v3/objects/contacts",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=10,
        )
        assert contacts.status_code == 200
        assert "X-HubSpot-RateLimit-Max" in contacts.headers
        hubspot_server.advance(1800)
        expired = requests.get(
            f"{hubspot_server.base_url}/crm/v3/objects/contacts",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=10,
        )
        assert expired.status_code == 401
        assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"

    def test_official_sdk_over_a_real_socket(hubspot_server):
        sdk = HubSpot(host=hubspot_server.base_url)
        tokens = sdk.oauth.tokens_api.create(
            grant_type="authorization_code",
            code=hubspot_server.authorize(),
            redirect_uri=hubspot_server.redirect_uri,
            client_id=hubspot_server.client_id,
            client_secret=hubspot_server.client_secret,
        )
        refreshed = sdk.oauth.tokens_api.create(
            grant_type="refresh_token",
            refresh_token=tokens.refresh_token,
            client_id=hubspot_server.client_id,
            client_secret=hubspot_server.client_secret,
        )
        api = HubSpot(access_token=refreshed.access_token, host=hubspot_server.base_url)
        page = api.crm.contacts.basic_api.get_page(limit=5)
        assert len(page.results) == 5
        assert hubspot_server.refresh_count() == 1

    def test_another_process_reaches_it(hubspot_server):
        code = hubspot_server.authorize()
        script = (
            "import sys, urllib.parse, urllib.request, json\\n"
            "body = urllib.parse.urlencode(dict(grant_type='authorization_code', code=sys.argv[2],"
            " client_id=sys.argv[3], client_secret=sys.argv[4], redirect_uri=sys.argv[5]))\\n"
            "with urllib.request.urlopen(sys.argv[1] + '/oauth/v1/token', body.encode()) as r:\\n"
            "    print(json.load(r)['hub_id'])\\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script, hubspot_server.base_url, code,
             hubspot_server.client_id, hubspot_server.client_secret, hubspot_server.redirect_uri],
            capture_output=True, text=True, timeout=60, check=True,
        )
        assert out.stdout.strip() == "1234567"

    def test_a_subprocess_configured_from_the_environment(hubspot_server):
        # Code that reads DESIGN's HUBSPOT_* settings, in another process.
        script = (
            "import sys\\n"
            "from hubspot_oauth import OAuthClient\\n"
            "token = OAuthClient.from_env().exchange_code(sys.argv[1])\\n"
            "print(token.hub_id, ' '.join(token.scopes))\\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script, hubspot_server.authorize()],
            env={**os.environ, **hubspot_server.environ()},
            capture_output=True, text=True, timeout=60, check=True,
        )
        hub_id, scopes = out.stdout.split(" ", 1)
        assert hub_id == "1234567"
        assert "crm.objects.contacts.read" in scopes.split()

    def test_both_fixtures_are_one_server(hubspot, hubspot_server):
        assert hubspot is hubspot_server
        token = hubspot.connect()
        answer = requests.get(f"{hubspot_server.base_url}/account-info/v3/details",
                              headers={"Authorization": f"Bearer {token.access_token}"},
                              timeout=10)
        assert answer.status_code == 200
        # The control API on the socket drives the same clock as the fixture.
        moved = requests.post(f"{hubspot_server.base_url}/_emulator/clock",
                              json={"advance": 3600}, timeout=10)
        assert moved.status_code == 200
        assert hubspot.server.clock.offset() >= 3600
    '''
)


def test_hubspot_server_serves_requests_sdk_and_subprocesses(run_user_tests) -> None:
    result = run_user_tests({"test_socket": REQUESTS_AND_SDK})
    result.assert_outcomes(passed=5)


WITHOUT_SERVER_EXTRA = src(
    '''
    import importlib.abc
    import sys

    BLOCKED = ("starlette", "uvicorn", "jinja2", "argon2", "itsdangerous", "multipart",
               "python_multipart")

    class _NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    for _name in list(sys.modules):
        if _name.split(".")[0] in BLOCKED or _name.startswith("hubspot_oauth.server"):
            del sys.modules[_name]
    sys.meta_path.insert(0, _NotInstalled())
    '''
)

USES_FIXTURE = src(
    '''
    def test_unrelated():
        assert 1 + 1 == 2

    def test_wants_hubspot(hubspot):
        pass
    '''
)


def test_missing_server_extra_fails_the_fixture_clearly(run_user_tests) -> None:
    result = run_user_tests({"conftest": WITHOUT_SERVER_EXTRA, "test_user": USES_FIXTURE})
    result.assert_outcomes(passed=1, errors=1)
    output = result.stdout.str()
    assert "pip install 'hubspot-oauth[testing]'" in output
    # One clear line, not a chain of import tracebacks from deep in the server.
    assert "Traceback" not in output
    assert "direct cause" not in output
    result.stdout.re_match_lines([r"^the local HubSpot needs the server extra .*"
                                  r"pip install 'hubspot-oauth\[testing\]' \(missing: \w+\)$"])


def test_plugin_import_loads_nothing_costly() -> None:
    script = (
        "import sys\n"
        "import hubspot_oauth.testing.plugin\n"
        "heavy = ('starlette', 'uvicorn', 'jinja2', 'sqlalchemy', 'alembic', 'argon2',"
        " 'httpx', 'anyio', 'hubspot_oauth.server', 'hubspot_oauth.client')\n"
        "print(sorted({m for m in sys.modules if m.startswith(heavy)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_plugin_is_registered_by_entry_point(run_user_tests) -> None:
    result = run_user_tests({"test_nothing": "def test_nothing():\n    pass\n"}, "--fixtures")
    result.stdout.fnmatch_lines(["hubspot -- *", "hubspot_server -- *"])


def test_plugin_can_be_turned_off(run_user_tests) -> None:
    result = run_user_tests({"test_nothing": "def test_nothing():\n    pass\n"},
                            "-p", "no:hubspot_oauth", "--fixtures")
    assert result.ret == 0
    assert "hubspot_server" not in result.stdout.str()


UNITTEST = src(
    '''
    import unittest

    import httpx
    from hubspot_oauth.testing import local_hubspot

    class ContactsSync(unittest.TestCase):
        def setUp(self):
            self.hubspot = self.enterContext(local_hubspot())

        def test_refresh_after_expiry(self):
            store = self.hubspot.token_store()
            key = store.save(self.hubspot.connect())
            self.hubspot.advance(1800)
            with httpx.Client(base_url=self.hubspot.base_url,
                              transport=self.hubspot.transport, auth=store.auth(key)) as api:
                self.assertEqual(api.get("/crm/v3/objects/contacts").status_code, 200)
            self.assertEqual(self.hubspot.refresh_count(), 1)

    if __name__ == "__main__":
        unittest.main()
    '''
)


def test_local_hubspot_under_unittest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unittest_user=UNITTEST)
    result = pytester.run(sys.executable, "-m", "unittest", "-v", "test_unittest_user",
                          timeout=120)
    assert result.ret == 0, result.stderr.str()
    result.stderr.fnmatch_lines(["*test_refresh_after_expiry*ok*", "OK"])

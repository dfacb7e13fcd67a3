"""ClientConfig: one set of names, flags over environment over defaults, no secret in repr."""

from __future__ import annotations

import pytest

from hubspot_oauth import ConfigurationError
from hubspot_oauth.client.config import DEFAULT_REDIRECT_URI, ClientConfig


def test_flags_win_over_environment_and_environment_over_defaults() -> None:
    env = {"HUBSPOT_CLIENT_ID": "env-id", "HUBSPOT_SCOPES": "a,b c", "CLIENT_ID": "node-id"}
    config = ClientConfig.from_env(env, client_id="flag-id")
    assert config.client_id == "flag-id"
    assert config.scopes == ("a", "b", "c")
    assert config.redirect_uri == DEFAULT_REDIRECT_URI
    assert ClientConfig.from_env(env).client_id == "env-id"


def test_node_quickstart_names_are_read_when_hubspot_names_are_absent() -> None:
    config = ClientConfig.from_env({"CLIENT_ID": "i", "CLIENT_SECRET": "s", "SCOPE": "x%20y"})
    assert (config.client_id, config.client_secret, config.scopes) == ("i", "s", ("x", "y"))


def test_unknown_api_version_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="HUBSPOT_API_VERSION"):
        ClientConfig.from_env({"HUBSPOT_API_VERSION": "v2"})


def test_missing_credentials_name_what_is_missing() -> None:
    with pytest.raises(ConfigurationError, match="HUBSPOT_CLIENT_SECRET") as info:
        ClientConfig.from_env({"HUBSPOT_CLIENT_ID": "i"}).require_credentials()
    assert "HUBSPOT_CLIENT_ID" not in str(info.value)


def test_repr_hides_the_secret_the_keys_and_passwords_in_urls() -> None:
    config = ClientConfig.from_env(
        {
            "HUBSPOT_CLIENT_SECRET": "s3cret-value",
            "HUBSPOT_OAUTH_ENCRYPTION_KEYS": "key-one-value,key-two-value",
            "HUBSPOT_OAUTH_DATABASE_URL": "postgresql+psycopg://user:hunter2@db:5432/tokens",
            "HUBSPOT_BASE_URL": "http://admin:pa55word@localhost:8765",
        }
    )
    text = repr(config)
    for secret in ("s3cret-value", "key-one-value", "key-two-value", "hunter2", "pa55word"):
        assert secret not in text
    assert "postgresql+psycopg://user:***@db:5432/tokens" in text
    assert "<2 key(s)>" in text
    # The values themselves are intact for use.
    assert config.database_url == "postgresql+psycopg://user:hunter2@db:5432/tokens"

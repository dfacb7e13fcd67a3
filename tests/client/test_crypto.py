"""The key ring: first key encrypts, all decrypt; wrong keys fail clearly; key files."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import pytest

from hubspot_oauth.client import crypto
from hubspot_oauth.client.crypto import KeyFileWarning, KeyRing, default_key_file, key_id
from hubspot_oauth.errors import ConfigurationError, EncryptionKeyError


def test_first_key_encrypts_every_key_decrypts() -> None:
    old, new = KeyRing.generate_key(), KeyRing.generate_key()
    under_old = KeyRing([old]).encrypt(b"secret-1")
    ring = KeyRing([new, old])
    assert ring.decrypt(under_old) == b"secret-1"
    under_new = ring.encrypt(b"secret-2")
    assert KeyRing([new]).decrypt(under_new) == b"secret-2"
    with pytest.raises(EncryptionKeyError):
        KeyRing([old]).decrypt(under_new)
    assert ring.primary_key_id == key_id(new)
    assert ring.key_ids == (key_id(new), key_id(old))


def test_rotate_moves_ciphertext_to_the_first_key() -> None:
    old, new = KeyRing.generate_key(), KeyRing.generate_key()
    text = KeyRing([old]).encrypt(b"payload")
    rotated = KeyRing([new, old]).rotate(text)
    assert KeyRing([new]).decrypt(rotated) == b"payload"


def test_wrong_key_is_a_clear_error_never_garbage() -> None:
    text = KeyRing([KeyRing.generate_key()]).encrypt(b"payload")
    other = KeyRing([KeyRing.generate_key()])
    with pytest.raises(EncryptionKeyError) as info:
        other.decrypt(text, what="connection '1'")
    message = str(info.value)
    assert "connection '1'" in message and "HUBSPOT_OAUTH_ENCRYPTION_KEYS" in message
    assert other.primary_key_id in message
    with pytest.raises(EncryptionKeyError):
        other.rotate(text)
    with pytest.raises(EncryptionKeyError):
        other.decrypt("not a fernet token")


def test_keys_from_a_comma_separated_string_and_the_environment() -> None:
    a, b = KeyRing.generate_key(), KeyRing.generate_key()
    assert KeyRing(f" {a} , {b} ,").key_ids == (key_id(a), key_id(b))
    ring = KeyRing.from_settings(environ={"HUBSPOT_OAUTH_ENCRYPTION_KEYS": f"{b},{a}"})
    assert ring.key_ids == (key_id(b), key_id(a))
    assert ring.source == "HUBSPOT_OAUTH_ENCRYPTION_KEYS"
    explicit = KeyRing.from_settings([a], environ={"HUBSPOT_OAUTH_ENCRYPTION_KEYS": b})
    assert explicit.key_ids == (key_id(a),)


@pytest.mark.parametrize("bad", ["", "short", "x" * 44, "c2VjcmV0"])
def test_malformed_keys_are_rejected_without_echoing_them(bad: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        KeyRing([bad] if bad else [])
    if bad:
        assert bad not in str(info.value)


def test_repr_never_shows_a_key() -> None:
    key = KeyRing.generate_key()
    ring = KeyRing([key])
    assert key not in repr(ring) and key[:10] not in repr(ring)
    assert key_id(key) in repr(ring)


def test_key_file_is_generated_once_with_mode_0600_and_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crypto, "_warned", set())
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    path = default_key_file(url)
    assert path == (tmp_path / "tokens.db.key").resolve()
    with pytest.warns(KeyFileWarning, match="HUBSPOT_OAUTH_ENCRYPTION_KEYS"):
        first = KeyRing.from_settings(database_url=url, environ={})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = path.read_text().strip()
    assert key not in str(first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an existing file: no second warning
        second = KeyRing.from_settings(database_url=url, environ={})
    assert second.key_ids == first.key_ids == (key_id(key),)
    assert second.decrypt(first.encrypt(b"x")) == b"x"


def test_key_file_for_postgresql_lives_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOT_OAUTH_DATA_DIR", str(tmp_path / "data"))
    path = default_key_file("postgresql+psycopg://u@127.0.0.1/db")
    assert path == tmp_path / "data" / "token-store.key"


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    import threading

    target = tmp_path / "race.key"
    rings: list[KeyRing] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KeyFileWarning)
        threads = [
            threading.Thread(target=lambda: rings.append(KeyRing.from_settings(
                key_file=target, environ={}))) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert len(rings) == 8
    assert len({ring.primary_key_id for ring in rings}) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["race.key"]

"""The key ring that encrypts stored tokens at rest (cryptography's MultiFernet).

Keys are Fernet keys (32 random bytes, URL-safe base64; make one with
`KeyRing.generate_key()` or ``hubspot-oauth`` docs). The first key of the ring encrypts,
every key decrypts, so a key is rotated by putting a new one first, running
`TokenStore.rotate_keys()`, and dropping the old one later (DESIGN §5; the "no rotation"
gap of peers in reference/peers.md §5.C).

Where the keys come from (`KeyRing.from_settings`), first match wins:

1. the `keys` argument (a list, or one comma-separated string);
2. ``HUBSPOT_OAUTH_ENCRYPTION_KEYS`` (comma-separated, first encrypts);
3. a key file, created on first use with mode 0600: ``<database file>.key`` beside a
   SQLite database, else ``token-store.key`` in `data_dir()`. Creating it warns once
   (one `KeyFileWarning`; no log record as well, so a console shows it once): whoever
   can read that file can read the tokens,
   and every host sharing a PostgreSQL store needs the same key.

Key values never appear in a repr, a log record or an error message; a key is named by
its *key id*, the first 12 hex digits of SHA-256 over the key (not reversible).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ..errors import ConfigurationError, EncryptionKeyError
from .config import data_dir

__all__ = ["ENV_KEYS", "KeyFileWarning", "KeyRing", "default_key_file", "key_id"]

ENV_KEYS = "HUBSPOT_OAUTH_ENCRYPTION_KEYS"


_warned: set[str] = set()
_warn_lock = threading.Lock()


class KeyFileWarning(UserWarning):
    """No encryption key was configured, so one was generated into a local file."""


def key_id(key: str | bytes) -> str:
    """A short, non-secret name for a key: 12 hex digits of SHA-256 over the key bytes."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return hashlib.sha256(b"hubspot-oauth key id\0" + raw).hexdigest()[:12]


def _parse_keys(keys: str | bytes | Iterable[str | bytes]) -> list[bytes]:
    if isinstance(keys, str | bytes):
        text = keys.decode("ascii", "replace") if isinstance(keys, bytes) else keys
        items: list[str | bytes] = [k for k in text.split(",")]
    else:
        items = list(keys)
    parsed: list[bytes] = []
    for position, item in enumerate(items, start=1):
        raw = item.strip().encode("ascii", "replace") if isinstance(item, str) else item.strip()
        if not raw:
            continue
        try:
            decoded = base64.urlsafe_b64decode(raw)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) != 32:
            # Never echo the value: it may be a real secret pasted in the wrong place.
            raise ConfigurationError(
                f"encryption key #{position} is not a Fernet key (32 bytes, URL-safe "
                f"base64, 44 characters); make one with "
                f"`python -c 'from cryptography.fernet import Fernet; "
                f"print(Fernet.generate_key().decode())'`"
            )
        if raw not in parsed:
            parsed.append(raw)
    return parsed


def default_key_file(database_url: str | None) -> Path:
    """Where a generated key lives: ``<file>.key`` beside a SQLite file, else in data_dir()."""
    if database_url and database_url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        database = make_url(database_url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            return Path(database).expanduser().resolve().with_name(
                Path(database).name + ".key"
            )
    return data_dir() / "token-store.key"


def _load_or_create_key_file(path: Path) -> bytes:
    """Read the key file, or create it atomically (mode 0600) when it does not exist.

    Many processes may start at once on a fresh store: the key is written to a private
    temporary file and hard-linked into place, which fails if another process won, so
    every process ends up with the same key and nobody reads a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".key-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, Fernet.generate_key() + b"\n")
            os.fsync(fd)
            os.close(fd)
            created = False
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
                created = True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if created:
            _warn_once(path)
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the token store's key file {path}: {exc.strerror}"
        ) from None


def _warn_once(path: Path) -> None:
    with _warn_lock:
        if str(path) in _warned:
            return
        _warned.add(str(path))
    message = (
        f"no encryption key configured ({ENV_KEYS} is unset): generated one in {path} "
        f"(mode 0600). Back it up: without it the stored tokens cannot be read. Every "
        f"process and host that shares this token store needs the same key."
    )
    # Only `warnings`: a log record as well printed the notice twice on a plain console
    # (Python's last-resort log handler plus the warning); `logging.captureWarnings(True)`
    # routes it to logging for apps that want it there.
    warnings.warn(message, KeyFileWarning, stacklevel=4)


class KeyRing:
    """Fernet keys, first encrypts, all decrypt.

    **Parameters:** `keys` - one or more Fernet keys (str or bytes, or one comma-separated
    string). Raises `ConfigurationError` when none is given or one is malformed.

    Usage: ``KeyRing.from_settings(database_url=url)``; ``ring.encrypt(b"…")`` returns the
    ciphertext (str, ASCII); ``ring.decrypt(text)`` returns the bytes or raises
    `EncryptionKeyError`.
    """

    __slots__ = ("_fernet", "_ids", "source")

    def __init__(self, keys: str | bytes | Sequence[str | bytes], *, source: str = "argument"):
        parsed = _parse_keys(keys)
        if not parsed:
            raise ConfigurationError("the encryption key ring is empty")
        self._fernet = MultiFernet([Fernet(k) for k in parsed])
        self._ids = tuple(key_id(k) for k in parsed)
        self.source = source

    @classmethod
    def from_settings(
        cls,
        keys: str | bytes | Sequence[str | bytes] | None = None,
        *,
        database_url: str | None = None,
        key_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        create: bool = True,
    ) -> KeyRing:
        """The ring from `keys`, else ``HUBSPOT_OAUTH_ENCRYPTION_KEYS``, else a key file
        (`key_file`, or `default_key_file(database_url)`), created and warned about once.

        With `create=False` a missing key file raises `EncryptionKeyError` instead: a
        store that already holds tokens must never get a fresh key that cannot read them.
        """
        if keys:
            return cls(keys, source="argument")
        env = os.environ if environ is None else environ
        configured = (env.get(ENV_KEYS) or "").strip()
        if configured:
            return cls(configured, source=ENV_KEYS)
        path = Path(key_file) if key_file is not None else default_key_file(database_url)
        if not create and not path.exists():
            raise EncryptionKeyError(
                f"the token store already holds encrypted tokens but its key file {path} "
                f"is missing; restore it or set {ENV_KEYS} to the key(s) it was written with"
            )
        return cls([_load_or_create_key_file(path)], source=str(path))

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key (44 characters of URL-safe base64)."""
        return Fernet.generate_key().decode("ascii")

    @property
    def primary_key_id(self) -> str:
        """Key id of the key that encrypts."""
        return self._ids[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Key ids of the ring, the encrypting key first."""
        return self._ids

    def encrypt(self, plaintext: bytes) -> str:
        """Encrypt under the first key; Fernet = AES-128-CBC + HMAC-SHA256 with a timestamp."""
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, ciphertext: str, *, what: str = "a stored token") -> bytes:
        """Decrypt with whichever key of the ring fits, or raise `EncryptionKeyError`."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise EncryptionKeyError(
                f"none of the {len(self._ids)} key(s) in the encryption key ring "
                f"(ids {', '.join(self._ids)}, from {self.source}) decrypts {what}: the "
                f"store was written with another key. Put that key in {ENV_KEYS} "
                f"(comma-separated, new key first)."
            ) from None

    def rotate(self, ciphertext: str, *, what: str = "a stored token") -> str:
        """Re-encrypt `ciphertext` under the first key (raises `EncryptionKeyError`)."""
        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError, ValueError):
            self.decrypt(ciphertext, what=what)  # raises the explanatory error
            raise

    def __repr__(self) -> str:
        return f"KeyRing(keys={len(self._ids)}, primary={self._ids[0]!r}, source={self.source!r})"

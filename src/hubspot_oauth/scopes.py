"""Scope lists: parsing and joining as HubSpot's authorize URL and token responses use them.

HubSpot documents scopes as space-separated (reference §2.3); once URL-decoded, ``%20``
and ``+`` are both a space. Configuration (``HUBSPOT_SCOPES``, the Node quickstart's
``SCOPE``) may also separate them with commas, which are never sent to HubSpot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["ALWAYS_GRANTED", "join_scopes", "parse_scope_param", "split_scopes"]

# HubSpot grants `oauth` to every install (reference §10).
ALWAYS_GRANTED = "oauth"

_CONFIG_SEPARATORS = re.compile(r"(?:%20|[\s,+])+")


def split_scopes(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Lenient split for configuration: spaces, commas, ``+`` or ``%20`` separate scopes.

    Returns the scopes in order with duplicates removed; `None` or ``""`` gives ``()``.
    An iterable is split item by item, so ``["a b", "c"]`` gives ``("a", "b", "c")``.
    """
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    found: list[str] = []
    for item in items:
        for scope in _CONFIG_SEPARATORS.split(item):
            if scope and scope not in found:
                found.append(scope)
    return tuple(found)


def parse_scope_param(value: str | None) -> tuple[str, ...]:
    """Strict split of an already URL-decoded `scope` or `optional_scope` parameter.

    Whitespace separates scopes (``+`` and ``%20`` have become spaces by then); commas are
    kept inside the scope name, so ``"a,b"`` is one (unknown) scope, as HubSpot never
    receives commas from its own tools (reference §2.3). Duplicates are removed.
    """
    if not value:
        return ()
    found: list[str] = []
    for scope in value.split():
        if scope not in found:
            found.append(scope)
    return tuple(found)


def join_scopes(scopes: Iterable[str]) -> str:
    """Space-join scopes in order, without duplicates (the wire form before encoding)."""
    found: list[str] = []
    for scope in scopes:
        if scope and scope not in found:
            found.append(scope)
    return " ".join(found)

"""A token request the fast path hands over after its inline grant missed is not tried
inline again by the general route: it goes to the thread pool, which answers with every
rule (token_fast_path.py, token.INLINE_MISSED_KEY)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from hubspot_oauth.server import ServerSettings, create_app

from .conftest import CLIENT


@pytest.mark.anyio
async def test_missed_inline_refresh_is_not_tried_inline_again(tmp_path: Path) -> None:
    app = create_app(ServerSettings(database_url=f"sqlite:///{tmp_path / 'miss.db'}"))
    hubspot = app.state.hubspot
    hubspot.list_apps()  # loads the app cache (until then hot paths miss)
    tries: list[bool] = []
    real = hubspot._refresh_fast

    def spy(*args: Any, **kwargs: Any) -> Any:
        tries.append(kwargs.get("inline", args[5] if len(args) > 5 else False))
        return real(*args, **kwargs)

    hubspot._refresh_fast = spy
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://local-hubspot.test") as client:
            response = await client.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", **CLIENT,
                "refresh_token": "na1-0000-0000-0000-0000-000000000000"})
    finally:
        hubspot.close()
    assert response.status_code == 400
    assert response.json()["status"] == "BAD_REFRESH_TOKEN"
    # The fast path's inline try, then the worker thread's (pooled) try: no second inline.
    assert tries == [True, False]

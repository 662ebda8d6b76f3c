"""Shared set-up for tests against the Microsoft double: records and a Postroom on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from postroom import Postroom
from tests.conftest import make_settings
from tests.fake_microsoft import CLIENT_ID, CLIENT_SECRET, MAILBOX, FakeMicrosoft


def graph_records(
    ms: FakeMicrosoft, *, secret: str = CLIENT_SECRET, **account: Any
) -> dict[str, Any]:
    """A profile and a Graph ``Default`` account pointing at the double."""
    return {
        "auth_profiles": [
            {
                "name": "O365",
                "client_id": CLIENT_ID,
                "client_secret": secret,
                "token_endpoint": ms.token_endpoint,
            }
        ],
        "accounts": [
            {
                "name": "Default",
                "protocol": "graph",
                "address": MAILBOX,
                "display_name": "Contoso Notifications",
                "reply_to": "team@contoso.example",
                "auth_profile": "O365",
                "graph_url": ms.url,
                **account,
            }
        ],
    }


@contextmanager
def graph_postroom(
    database_url: str, ms: FakeMicrosoft, *, secret: str = CLIENT_SECRET, **settings: Any
) -> Iterator[Postroom]:
    values: dict[str, Any] = {"allowed_endpoint_hosts": "127.0.0.1,localhost", "http_timeout": 5.0}
    values.update(settings)
    with Postroom(make_settings(database_url, **values)) as postroom:
        postroom.apply(graph_records(ms, secret=secret))
        yield postroom

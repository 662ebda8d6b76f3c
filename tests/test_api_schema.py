"""The published OpenAPI document, exercised by schemathesis with an admin token: no 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postroom import Postroom
from tests.apikit import PREFIX, issue_tokens, mounted
from tests.conftest import make_settings
from tests.test_delivery import account

EXAMPLES_PER_OPERATION = 25


@pytest.mark.timeout(120)
def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply({
            "operators": [{"id": "alice", "name": "Alice", "email": "alice@example.com"}],
            "accounts": [account(1)],
            "case_types": [{"class": "A-B-C", "class_group": "A-B", "id_prefix": "C-"}],
        })  # fmt: skip
        pr.cases.create("A-B-C")
        tokens = issue_tokens(pr)
        app = mounted(pr)
        schema = schemathesis.openapi.from_asgi(f"{PREFIX}/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) > 30
        failures: list[str] = []
        statuses: set[int] = set()
        for operation in operations:
            _exercise(operation, tokens.admin, failures, statuses)
        assert failures == []
        # The token was sent and bodies reached the routes: successes and refusals both.
        assert 401 not in statuses
        assert {200, 201, 422} <= statuses, statuses


def _exercise(
    operation: Any, headers: dict[str, str], failures: list[str], statuses: set[int]
) -> None:
    """Call one operation with generated requests; 5xx answers go into ``failures``."""
    strategy = operation.as_strategy()

    @given(data=st.data())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy)
        response = case.call(headers=headers)
        statuses.add(response.status_code)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

    run()

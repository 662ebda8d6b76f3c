"""What templates see when a case's email is rendered: the case, a party, the sender."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from postroom.accounts import EmailAccount
from postroom.cases.models import Case, Recipient, RecipientKind
from postroom.operators import Operator


class Addressed(Protocol):
    """A request's recipient lists (an :class:`~postroom.cases.emails.EmailRequest`)."""

    @property
    def to(self) -> Sequence[Recipient]: ...
    @property
    def cc(self) -> Sequence[Recipient]: ...
    @property
    def bcc(self) -> Sequence[Recipient]: ...


def first_party(request: Addressed, case: Case | None) -> dict[str, Any]:
    """The first work party the request sends to: ``party`` in the templates."""
    if case is None:
        return {}
    for r in (*request.to, *request.cc, *request.bcc):
        if r.kind is RecipientKind.PARTY:
            for p in case.parties:
                if p.role == r.value:
                    return p.model_dump()
    return {}


def render_context(
    case: Case | None,
    *,
    label: str,
    class_name: str,
    actor: Operator | None,
    account: EmailAccount,
    party: dict[str, Any],
) -> dict[str, Any]:
    """What templates see (case, party, operator, account); the preview uses it too."""
    # Plain data only: the sandbox sees dicts and strings, never live objects.
    case_view: dict[str, Any] = {"class_name": class_name, "type": label or class_name}
    if case is not None:
        case_view.update(
            id=case.id,
            status=case.status,
            created_by=case.created_by,
            created_at=case.created_at.isoformat(timespec="seconds"),
            data=dict(case.data),
        )
    return {
        "case": case_view,
        "party": party,
        "operator": actor.model_dump() if actor is not None else {},
        "account": {
            "name": account.name,
            "address": account.address,
            "display_name": account.display_name,
        },
    }

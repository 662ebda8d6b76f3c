"""The suppression store on SQLite and PostgreSQL: which entry stands when reasons meet."""

from __future__ import annotations

from postroom import Postroom
from postroom.suppression import EVERYWHERE, SuppressionReason, SuppressionStore

R = SuppressionReason


def add(pr: Postroom, reason: SuppressionReason, detail: str) -> tuple[SuppressionReason, bool]:
    with pr.engine.begin() as conn:
        entry, new = SuppressionStore().suppress(
            conn, " Jane@Customer.Example ", scope=EVERYWHERE, reason=reason, detail=detail
        )
    return entry.reason, new


def test_a_complaint_after_a_bounce_takes_its_place_and_mail_no_longer_lifts_it(
    postroom: Postroom,
) -> None:
    assert add(postroom, R.HARD_BOUNCE, "5.1.1 user unknown") == (R.HARD_BOUNCE, True)
    assert add(postroom, R.COMPLAINT, "reported as spam") == (R.COMPLAINT, True)
    with postroom.engine.begin() as conn:
        assert SuppressionStore().lift_bounces(conn, "jane@customer.example") == []
        (entry,) = SuppressionStore().list(conn)
    assert (entry.address, entry.reason, entry.detail) == (
        "jane@customer.example",
        R.COMPLAINT,
        "reported as spam",
    )


def test_a_weaker_reason_leaves_the_entry_as_it_is(postroom: Postroom) -> None:
    assert add(postroom, R.MANUAL, "asked by phone") == (R.MANUAL, True)
    assert add(postroom, R.HARD_BOUNCE, "5.1.1") == (R.MANUAL, False)
    assert add(postroom, R.COMPLAINT, "spam") == (R.MANUAL, False)
    assert add(postroom, R.SOFT_BOUNCES, "3 soft") == (R.MANUAL, False)
    with postroom.engine.begin() as conn:
        (entry,) = SuppressionStore().list(conn)
    assert entry.detail == "asked by phone"


def test_a_bounce_after_a_bounce_keeps_the_first(postroom: Postroom) -> None:
    assert add(postroom, R.SOFT_BOUNCES, "3 soft bounces") == (R.SOFT_BOUNCES, True)
    assert add(postroom, R.HARD_BOUNCE, "5.1.1") == (R.SOFT_BOUNCES, False)

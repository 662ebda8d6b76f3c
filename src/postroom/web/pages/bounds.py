"""The numbers a Studio address may carry: record ids and page numbers, bounded once.

Ids are the database's INTEGER, 32 bits on PostgreSQL (the REST API bounds them alike): a
larger number names nothing, and the drivers would refuse it with an overflow (a 500)
rather than "not found". Out of range is a validation error before the page runs, which
the Studio answers as it does a path that is no number: a 404 page for an id in the path,
a 422 page naming the value for a query parameter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_ID = 2**31 - 1

RecordId = Annotated[int, Path(ge=1, le=MAX_ID)]
"""An id in the path (``/outbox/{outbox_id}``)."""

OlderThan = Annotated[int | None, Query(ge=1, le=MAX_ID)]
"""``?before=``: only records older than this id (paging by id)."""

PageNumber = Annotated[int, Query(ge=1, le=MAX_ID)]
"""``?page=``: 1 to MAX_ID, else refused; a page past the last is the list's to show."""

"""Paged, sorted lists with text search, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Connection, Row, Select, Table, func

T = TypeVar("T")
_S = TypeVar("_S", bound=Select)  # type: ignore[type-arg]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of matching items and how many match in all."""

    items: list[T]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max((self.total + self.page_size - 1) // self.page_size, 1)

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def contains(column: ColumnElement[Any], needle: str) -> ColumnElement[bool]:
    """Whether ``column`` holds ``needle`` (already lower-cased), ignoring case."""
    # LIKE with the user's % and _ escaped, lower-cased on both sides: the same on
    # SQLite and PostgreSQL, and ``50%`` or ``a_b`` match themselves.
    return func.lower(column).contains(needle, autoescape=True)


def filtered(base: _S, table: Table, *, matching: ColumnElement[bool] | None, **equal: Any) -> _S:
    """``base`` narrowed to rows ``matching`` the text (if any) and whose column equals each
    value of ``equal`` given (None: any value)."""
    if matching is not None:
        base = base.where(matching)
    for name, value in equal.items():
        if value is not None:
            base = base.where(table.c[name] == value)
    return base


def ordered(
    column: ColumnElement[Any], tiebreak: ColumnElement[Any], *, descending: bool
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The ORDER BY for ``column``; ``tiebreak`` keeps paging stable when values repeat."""
    if descending:
        return column.desc(), tiebreak.desc()
    return column.asc(), tiebreak.asc()


def paged(
    conn: Connection,
    counted: Select[Any],
    *,
    listed: Select[Any],
    page: int,
    page_size: int,
    item: Callable[[Row[Any]], T],
) -> Page[T]:
    """The page numbered ``page`` of ``listed``, after ``counted`` counts all the matches.

    A page past the last gives the last, so a list that shrank between two requests
    still shows something.
    """
    total: int = conn.execute(counted).scalar_one()
    size = max(page_size, 1)
    number = min(max(page, 1), max((total + size - 1) // size, 1))
    rows = conn.execute(listed.limit(size).offset((number - 1) * size))
    return Page(items=[item(r) for r in rows], total=total, page=number, page_size=size)

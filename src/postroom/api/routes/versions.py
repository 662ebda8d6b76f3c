"""Correspondence versions: the history, one version, a diff, restore."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from postroom.api.auth import admin
from postroom.api.problems import problem_responses
from postroom.api.schemas.versions import (
    DiffView,
    HistoryView,
    RestoreView,
    VersionContent,
    VersionView,
)
from postroom.api.writes import writer
from postroom.app import Postroom
from postroom.correspondence import versions
from postroom.db.engine import reading

MAX_NUMBER = 2**31 - 1  # an INTEGER column: a larger number names nothing
Number = Annotated[int, Path(ge=1, le=MAX_NUMBER, description="A version number")]
_READ = problem_responses(401, 403, 404, 422)


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter(
        tags=["correspondence"],
        dependencies=[admin],
        responses=problem_responses(401, 403),
    )

    @api.get(
        "/correspondence/{name}/versions",
        responses=_READ,
        summary="List a correspondence's versions",
    )
    def list_versions(name: str) -> HistoryView:
        """Every saved version, newest first: who saved it, when, why, and how many outbox
        emails were rendered from it. A deleted correspondence keeps its versions."""
        with reading(postroom.engine) as conn:
            return HistoryView.of(versions.history(conn, name))

    @api.get("/correspondence/{name}/versions/{number}", responses=_READ, summary="Get one version")
    def get_version(name: str, number: Number) -> VersionContent:
        """The version's full content, as the record was when it was saved."""
        with reading(postroom.engine) as conn:
            found = versions.info(conn, name, number)
            record = versions.version(conn, name, number)
        return VersionContent(**VersionView.of(found).model_dump(), correspondence=record)

    @api.get("/correspondence/{name}/diff", responses=_READ, summary="Compare two versions")
    def diff_versions(
        name: str,
        from_: Annotated[int, Query(alias="from", ge=1, le=MAX_NUMBER)],
        to: Annotated[
            int | None,
            Query(ge=1, le=MAX_NUMBER, description="Default: the current version"),
        ] = None,
    ) -> DiffView:
        """Part by part (subject, html, text, language, each translation, images): a
        unified diff and numbered lines for a side-by-side view."""
        with reading(postroom.engine) as conn:
            return DiffView.of(versions.diff(conn, name, from_, to))

    @api.post(
        "/correspondence/{name}/versions/{number}/restore",
        responses=problem_responses(401, 403, 404, 409, 422),
        summary="Restore a version",
    )
    def restore_version(name: str, number: Number) -> RestoreView:
        """Save the version's content as a new version ("restored from version N"), checked
        as any write is. Restoring the current content is `unchanged`; restoring a version
        of a deleted correspondence creates it again."""
        # A template today's sandbox refuses is a 422 naming the field, as on any write.
        return RestoreView.of(versions.restore(postroom, name, number, by=writer()))

    return api

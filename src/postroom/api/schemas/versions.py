"""A correspondence's versions as the API shows them: the history, one version, a diff."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from postroom.correspondence import Correspondence
from postroom.correspondence.diffs import ImageChange, LineKind, PartChange, PartDiff, VersionDiff
from postroom.correspondence.versions import History, Restored, VersionInfo
from postroom.records import Change


class VersionView(BaseModel):
    """One saved version: who saved it, when, why, and how many emails it rendered."""

    number: int = Field(examples=[3])
    saved_by: str = Field(
        examples=["api:deploy"], description="apply, cli:<user>, api:<token>, studio:<user>"
    )
    saved_at: datetime
    note: str | None = Field(None, examples=["restored from version 1"])
    language: str = Field(examples=["en"])
    subject: str | None = Field(description="null for a fragment")
    emails: int = Field(description="Outbox emails rendered from this version")
    current: bool = Field(description="Whether this is the version in use now")

    @classmethod
    def of(cls, found: VersionInfo) -> VersionView:
        return cls(**{name: getattr(found, name) for name in cls.model_fields})


class HistoryView(BaseModel):
    """A correspondence's versions, newest first."""

    name: str
    current: int | None = Field(description="The version in use; null once deleted")
    deleted: bool
    updated_by: str | None = Field(description="Who saved the current version")
    updated_at: datetime | None
    versions: list[VersionView]

    @classmethod
    def of(cls, found: History) -> HistoryView:
        return cls(
            name=found.name,
            current=found.current,
            deleted=found.deleted,
            updated_by=found.updated_by,
            updated_at=found.updated_at,
            versions=[VersionView.of(v) for v in found.versions],
        )


class VersionContent(VersionView):
    """One version with its full content, images included (base64)."""

    correspondence: Correspondence


class DiffLineView(BaseModel):
    """A line of a part's diff with its numbers in the old (``old``) and new (``new``) text."""

    kind: LineKind = Field(description="same, removed, added, or hunk (an @@ header)")
    text: str
    old: int | None = None
    new: int | None = None


class PartDiffView(BaseModel):
    """What changed in one part: ``subject``, ``html``, ``translations.de.text``…"""

    part: str = Field(examples=["html"])
    change: PartChange
    unified: str = Field(description="The part's unified diff, as diff -u prints it")
    lines: list[DiffLineView]

    @classmethod
    def of(cls, found: PartDiff) -> PartDiffView:
        return cls(
            part=found.part,
            change=found.change,
            unified=found.unified,
            lines=[
                DiffLineView(kind=x.kind, text=x.text, old=x.old, new=x.new) for x in found.lines
            ],
        )


class ImageRef(BaseModel):
    """An image as a version names it."""

    filename: str
    content_type: str
    sha256: str
    size: int


class ImageChangeView(BaseModel):
    """An image added, removed or replaced, by its content id."""

    content_id: str
    change: PartChange
    old: ImageRef | None
    new: ImageRef | None

    @classmethod
    def of(cls, found: ImageChange) -> ImageChangeView:
        return cls(
            content_id=found.content_id,
            change=found.change,
            old=None if found.old is None else ImageRef(**found.old),
            new=None if found.new is None else ImageRef(**found.new),
        )


class DiffView(BaseModel):
    """What changed from version ``from`` to version ``to``; empty lists when nothing did."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    from_: int = Field(alias="from")
    to: int
    changed: bool
    unified: str = Field(description="Every part's unified diff, then the images")
    parts: list[PartDiffView]
    images: list[ImageChangeView]

    @classmethod
    def of(cls, found: VersionDiff) -> DiffView:
        return cls(
            name=found.name,
            from_=found.old,
            to=found.new,
            changed=found.changed,
            unified=found.unified,
            parts=[PartDiffView.of(p) for p in found.parts],
            images=[ImageChangeView.of(i) for i in found.images],
        )


class RestoreView(BaseModel):
    """What a restore did: ``updated`` (or ``created`` for a deleted one), or ``unchanged``."""

    name: str
    restored: int = Field(description="The version whose content was saved again")
    change: Change
    current: int = Field(description="The version in use now (new unless unchanged)")

    @classmethod
    def of(cls, found: Restored) -> RestoreView:
        return cls(
            name=found.name, restored=found.restored, change=found.change, current=found.current
        )

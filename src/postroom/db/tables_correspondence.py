"""Tables of correspondence kept for proof: versions, inline images, reviews before sending."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, Integer, LargeBinary, String, Table, Text

from postroom.db.metadata import metadata
from postroom.db.types import UTCDateTime

# Every saved state of a correspondence, numbered from 1 per name; the newest equals the
# record. Nothing here is ever updated: a restore saves the old text as a new number.
correspondence_versions = Table(
    "correspondence_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("number", Integer, nullable=False),
    Column("language", String(35), nullable=False),
    Column("subject", Text, nullable=True),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=True),
    Column("translations", JSON, nullable=True),
    Column("images", JSON, nullable=True),  # as in correspondence.images: references
    Column("saved_by", String(255), nullable=False),
    Column("saved_at", UTCDateTime, nullable=False),
    Column("note", Text, nullable=True),  # "restored from version 2"
    Index("ux_correspondence_versions", "name", "number", unique=True),
)

# Image bytes by their SHA-256: a version that names an image keeps it, whatever the
# record holds now.
correspondence_images = Table(
    "correspondence_images",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("content_type", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# An email a step composed for a person to approve, edit or reject before it is queued.
# Its outbox rows (one, or an encrypted and an unencrypted copy) wait as
# 'awaiting_review' with review_id naming this row.
reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(64), nullable=True, index=True),
    Column("step", String(255), nullable=False),
    Column("reviewer_kind", String(16), nullable=False),  # operator, party
    Column("reviewer", String(255), nullable=False),  # the operator id or the party role
    Column("reviewer_operator", String(128), nullable=True),  # who it resolved to
    Column("reviewer_address", String(320), nullable=True),
    Column("state", String(16), nullable=False),  # see reviews.models.ReviewState
    Column("requested_at", UTCDateTime, nullable=False),
    Column("escalate_at", UTCDateTime, nullable=True),
    Column("escalated_at", UTCDateTime, nullable=True),
    # Whom the escalation told (the manager's operator id), or None: nobody could be.
    Column("escalated_to", String(128), nullable=True),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("decided_by", String(255), nullable=True),
    Column("reason", Text, nullable=True),
    Column("original", JSON, nullable=False),  # {"subject", "html", "text"} as composed
    Column("edited", JSON, nullable=True),  # the reviewer's text, when changed
    # Everything needed to build each outbox row's message again with the reviewer's
    # text, and to seal it at approval: [{"outbox_id", "encrypt", "email": {...}}].
    Column("drafts", JSON, nullable=False),
    Index("ix_reviews_state", "state", "escalate_at"),
)

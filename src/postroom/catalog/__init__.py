"""The record types (accounts, profiles, keystores, operators, correspondence, case types,
webhooks).

Each has one :class:`RecordKind` describing it: its names and URLs, its input and view
models (secrets write-only), how it is listed, read and deleted, and what refuses a
delete. The API's routes, the Studio's delete pages and the CLI's commands are built
from these descriptions, so the three accept, show and refuse alike.
"""

from postroom.catalog.kinds import (
    ACCOUNTS,
    AUTH_PROFILES,
    BY_SLUG,
    CASE_TYPES,
    CORRESPONDENCE,
    KEYSTORES,
    KINDS,
    OPERATORS,
    WEBHOOKS,
    InUseError,
    RecordKind,
    delete,
    record,
    records,
    refusal,
)

__all__ = [
    "ACCOUNTS",
    "AUTH_PROFILES",
    "BY_SLUG",
    "CASE_TYPES",
    "CORRESPONDENCE",
    "KEYSTORES",
    "KINDS",
    "OPERATORS",
    "WEBHOOKS",
    "InUseError",
    "RecordKind",
    "delete",
    "record",
    "records",
    "refusal",
]

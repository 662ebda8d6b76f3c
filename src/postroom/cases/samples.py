"""A sample case to preview letters with when no real case is chosen."""

from __future__ import annotations

from collections.abc import Iterable

from postroom.cases.fields import sample_data
from postroom.cases.models import INITIAL_STATUS, Case, CaseType, Party
from postroom.db.types import utcnow
from postroom.operators import Operator

SAMPLE_OPERATOR = Operator(id="sample", name="Sam Sample", email="sam.sample@example.com")
SAMPLE_PARTY = Party(role="Recipient", address="jane.doe@example.com", name="Jane Doe")


def sample_case(
    ctype: CaseType | None, *, reads: Iterable[str] = (), creator: Operator | None = None
) -> Case:
    """A case of ``ctype`` (or of no type) with a realistic value for each of its fields.

    ``reads``: case data keys the letter reads. Each gets a value even when no field
    declares it, so that a preview shows the letter rather than a missing-value error.
    """
    data = sample_data(ctype)
    for key in sorted(set(reads) - set(data)):
        data[key] = f"Sample {key.replace('_', ' ')}"
    creator = creator or SAMPLE_OPERATOR
    parties = []
    for role, source in (ctype.parties if ctype is not None else {}).items():
        if source == "creator" and creator.email:
            parties.append(
                Party(role=role, address=creator.email, name=creator.name, operator_id=creator.id)
            )
        elif source.startswith("data.") and "@" in str(data.get(source[5:], "")):
            parties.append(Party(role=role, address=str(data[source[5:]])))
        else:
            name = role.replace("_", " ")
            parties.append(
                Party(role=role, address=f"{role.lower()}@example.com", name=f"Sample {name}")
            )
    prefix = ctype.id_prefix if ctype is not None else "CASE-"
    now = utcnow()
    return Case(
        id=f"{prefix}{'' if prefix.endswith('-') else '-'}1001",
        case_type=ctype.class_name if ctype is not None else "Sample",
        status=INITIAL_STATUS,
        created_by=creator.id,
        data=data,
        created_at=now,
        updated_at=now,
        parties=parties,
    )

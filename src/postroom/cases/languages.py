"""Which language each recipient's email is written in, and why (kept on the row and case)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from postroom.cases.models import Case, CaseType
from postroom.cases.recipients import Addressee
from postroom.languages import DEFAULT_LANGUAGE, best_match, check_language


@dataclass(frozen=True, slots=True)
class LanguageChoice:
    """The language of one recipient's email and the reason, for the case history."""

    language: str
    reason: str


def choose_language(
    wanted: str | None,
    *,
    whose: str,
    case_type: str | None,
    offered: Sequence[str],
) -> LanguageChoice:
    """The recipient's language if the text is written in it, else the case type's, else
    the text's own (``offered[0]``). ``whose`` names the recipient: "CaseManager's".
    """
    own = offered[0] if offered else (case_type or DEFAULT_LANGUAGE)
    if wanted:
        found = best_match(wanted, offered)
        if found is not None:
            return LanguageChoice(found, f"{whose} language")
    missing = f"; not written in {whose} {wanted}" if wanted else ""
    if case_type:
        found = best_match(case_type, offered)
        if found is not None:
            return LanguageChoice(found, f"the case type's language{missing}")
    return LanguageChoice(own, f"the correspondence's own language{missing}")


@dataclass(frozen=True, slots=True)
class LanguageGroup:
    """The recipients (to, cc, bcc) whose email is in one language."""

    choice: LanguageChoice
    lists: tuple[list[Addressee], list[Addressee], list[Addressee]]


def by_language(
    lists: Sequence[Sequence[Addressee]],
    *,
    offered: Sequence[str] | None,
    case_type: str | None,
    asked: str | None = None,
) -> list[LanguageGroup]:
    """The recipients grouped by the language of their email, first recipient first.

    ``offered`` are the languages a correspondence is written in, its own first; None for
    inline text, which is written in one language: the case type's, else the default.
    ``asked`` is the language the request asks for, for every recipient.
    """
    languages = list(offered) if offered else [asked or case_type or DEFAULT_LANGUAGE]
    groups: dict[str, LanguageGroup] = {}
    reasons: dict[str, list[str]] = {}
    for index, people in enumerate(lists):
        for person in people:
            choice = choose_language(
                asked or person.language,
                whose="the request's" if asked else person.whose,
                case_type=case_type,
                offered=languages,
            )
            group = groups.get(choice.language)
            if group is None:
                group = groups[choice.language] = LanguageGroup(choice, ([], [], []))
                reasons[choice.language] = []
            group.lists[index].append(person)
            if choice.reason not in reasons[choice.language]:
                reasons[choice.language].append(choice.reason)
    return [
        replace(g, choice=LanguageChoice(g.choice.language, "; ".join(reasons[language])))
        for language, g in groups.items()
    ]


def group_party(group: LanguageGroup, case: Case | None) -> dict[str, Any]:
    """The first work party among a group's recipients: ``party`` in its templates."""
    if case is None:
        return {}
    for people in group.lists:
        for person in people:
            if person.role is not None:
                party = next((p for p in case.parties if p.role == person.role), None)
                if party is not None:
                    return party.model_dump()
    return {}


def party_language(
    ctype: CaseType, role: str, data: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """The language a case type gives work party ``role`` (its fixed one, else its data
    field's), and a history note when the field holds no language Postroom knows.

    None: the party's operator's language, if any, is used instead.
    """
    spec = ctype.party_languages.get(role)
    if spec is None:
        return None, None
    if spec.language is not None:
        return spec.language, None
    field = spec.language_field or ""
    value = data.get(field)
    if value is None or value == "":
        return None, None
    if isinstance(value, str):
        try:
            return check_language(value), None
        except ValueError:
            pass
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    fallback = "the case type's" if ctype.language else "the correspondence's own"
    return None, (
        f"party {role}: language {shown} in {field} is not a known language; "
        f"its emails use {fallback}"
    )

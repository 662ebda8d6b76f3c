"""A reviewer's edit: checked like any text a user gives, and shown as a unified diff.

The reviewer's text is sent as written: it is not rendered as a template, so ``{{``
in it reaches the recipient as typed (the case data was filled in already).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection

from postroom.correspondence.content_ids import shown_content_ids
from postroom.correspondence.html2text import html_to_text
from postroom.correspondence.limits import MAX_RENDERED_CHARS
from postroom.diffing import comparable, too_different
from postroom.errors import FieldIssue, InvalidTextError, MessageError, invalid_fields
from postroom.reviews.models import Text
from postroom.text import check_body, check_line, check_unicode

MAX_SUBJECT = 900  # RFC 5322's 998 octets per line, with room for "Subject: " and folding
MAX_BODY = MAX_RENDERED_CHARS  # what a template may render to
MAX_REASON = 2000
MAX_DIFF = 20_000  # characters of a diff kept in a history line


def edited_text(
    original: Text,
    *,
    subject: str | None,
    html: str | None,
    text: str | None,
    images: Collection[str] = (),
) -> Text | None:
    """The text to send when a reviewer changed something, else None.

    An edited HTML without an edited text gets its text part derived from it, as a
    template without a text part does. An edited HTML may show only the email's inline
    ``images`` (content ids). Errors name the field (``subject``, ``html``).
    """
    issues: list[FieldIssue] = []
    checked = {
        "subject": _checked("subject", subject, MAX_SUBJECT, issues, line=True),
        "html": _checked("html", html, MAX_BODY, issues, line=False),
        "text": _checked("text", text, MAX_BODY, issues, line=False),
    }
    if issues:
        raise invalid_fields(MessageError, issues)
    new_html = checked["html"] if checked["html"] is not None else original.html
    if new_html != original.html:
        _check_images(new_html, images)
    new_text = checked["text"]
    if new_text is None or new_text == original.text:
        # Text not edited (or sent back unchanged by a form): it follows the HTML.
        new_text = html_to_text(new_html) if new_html != original.html else original.text
    new = Text(
        checked["subject"] if checked["subject"] is not None else original.subject,
        new_html,
        new_text,
    )
    return None if new == original else new


def _check_images(html: str, images: Collection[str]) -> None:
    """Refuse an edit showing an image the email lacks: it would arrive broken."""
    missing = [c for c in shown_content_ids(html) if c not in images]
    if not missing:
        return
    have = ", ".join(sorted(images)) or "none"
    shown = ", ".join(f"cid:{c}" for c in missing)
    message = (
        f"shows {shown}, but the email has no such image (its images: {have}); "
        "correct the src or remove the image"
    )
    raise invalid_fields(MessageError, [FieldIssue("html", message)])


def check_reason(reason: str | None) -> str:
    """A rejection's reason: required, one to MAX_REASON characters of body text."""
    if reason is None or not reason.strip():
        raise invalid_fields(MessageError, [FieldIssue("reason", "give a reason for rejecting")])
    if len(reason) > MAX_REASON:
        message = f"at most {MAX_REASON} characters"
        raise invalid_fields(MessageError, [FieldIssue("reason", message)])
    try:
        return check_body(reason, field="reason").strip()
    except InvalidTextError as exc:
        raise invalid_fields(MessageError, [FieldIssue("reason", str(exc))]) from None


def diff(original: Text, edited: Text) -> str:
    """What the reviewer changed, part by part, as unified diffs (bounded in length)."""
    out: list[str] = []
    for part in ("subject", "html", "text"):
        before, after = getattr(original, part), getattr(edited, part)
        if before == after:
            continue
        old, new = before.splitlines(), after.splitlines()
        if not comparable(old, new):
            out += [f"--- {part} (composed)", f"+++ {part} (reviewed)", too_different(old, new)]
            continue
        lines = difflib.unified_diff(
            old, new, fromfile=f"{part} (composed)", tofile=f"{part} (reviewed)", lineterm=""
        )
        out.extend(lines)
    found = "\n".join(out)
    if len(found) > MAX_DIFF:
        found = found[:MAX_DIFF] + f"\n… ({len(found) - MAX_DIFF} more characters of diff)"
    return found


def _checked(
    field: str, value: str | None, limit: int, issues: list[FieldIssue], *, line: bool
) -> str | None:
    if value is None:
        return None
    try:
        check_unicode(value, field=field)
        if line:
            value = check_line(value.strip(), field=field)
            if not value:
                issues.append(FieldIssue(field, "the subject must not be empty"))
                return None
        else:
            # A browser's form sends CRLF: the composed text has LF, and must compare equal.
            value = check_body(value, field=field).replace("\r\n", "\n")
            if field == "html" and not value.strip():
                issues.append(FieldIssue(field, "the HTML body must not be empty"))
                return None
    except InvalidTextError as exc:
        issues.append(FieldIssue(field, str(exc).removeprefix(f"{field}: ")))
        return None
    if len(value) > limit:
        issues.append(FieldIssue(field, f"at most {limit} characters"))
        return None
    return value

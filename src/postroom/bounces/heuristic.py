"""Non-standard bounces (qmail, older Postfix, ...): read by ``flufl.bounce``'s detectors.

The detectors give the addresses and whether each failure is temporary or permanent;
the status and the words for each come from the report's text around the address.
They read a bounded copy of the report (:mod:`postroom.bounces.reduced`), and are run
here one by one, in flufl's order and stopping at the first that finds something, as
its ``all_failures`` does, but each guarded: ``all_failures`` gives up on the first
detector that raises (Yale's on a report without From, Sina's on an 8-bit From), and
the detectors after it would never run.
"""

from __future__ import annotations

import email.message
import logging
import re
from collections.abc import Sequence

import flufl.bounce._scan
from flufl.bounce import BounceDetector, Recipients, all_failures

from postroom.bounces.models import RecipientReport, ReportOutcome
from postroom.bounces.reduced import reduced
from postroom.bounces.severity import is_soft, one_line, text_code
from postroom.bounces.standard import MAX_RECIPIENTS

log = logging.getLogger("postroom.bounces")

MAX_PARAGRAPH = 2_000
_CODE_LINE = re.compile(r"^.*(?:\b[45]\d\d\b|\b[45]\.\d{1,3}\.\d{1,3}\b).*$", re.M)


# flufl's own list, most specific first; None in a version without it (then its
# ``all_failures`` runs them, unguarded one by one).
_DETECTORS: Sequence[type[BounceDetector]] | None = getattr(flufl.bounce._scan, "_DETECTORS", None)


def detected(message: email.message.Message) -> tuple[set[str], set[str]]:
    """(temporary, permanent) failed addresses the detectors find in a bounded copy of
    ``message``; a detector that fails is passed over."""
    copy = reduced(message)
    if _DETECTORS is None:
        return _all_at_once(copy)
    for detector in _DETECTORS:
        try:
            temporary, permanent = detector().process(copy)
        except Exception as exc:  # a detector tripping over a stranger's mail stops nothing
            log.info(
                "the bounce detector %s could not read a report (%s)",
                detector.__name__,
                type(exc).__name__,
            )
            continue
        if temporary or permanent:
            return _decoded(temporary), _decoded(permanent)
    return set(), set()


def _all_at_once(copy: email.message.Message) -> tuple[set[str], set[str]]:
    try:
        temporary, permanent = all_failures(copy)
    except Exception as exc:
        log.info("the bounce detectors could not read a report (%s)", type(exc).__name__)
        return set(), set()
    return _decoded(temporary), _decoded(permanent)


def _decoded(found: Recipients) -> set[str]:
    out = set()
    for raw in found:
        if not isinstance(raw, bytes):
            continue
        address = raw.decode("ascii", "replace").strip().strip("<>")
        if "@" in address and not any(c.isspace() for c in address):
            out.add(address)
    return out


def recipients(message: email.message.Message, text: str) -> tuple[list[RecipientReport], bool]:
    """The recipients a non-standard report names, and whether a detector found any."""
    temporary, permanent = detected(message)
    reports: list[RecipientReport] = []
    for address in sorted(permanent | temporary)[:MAX_RECIPIENTS]:
        hard = address in permanent
        words = paragraph(text, address)
        code, status = text_code(words)
        reports.append(
            RecipientReport(
                addresses=(address,),
                outcome=ReportOutcome.BOUNCED if hard else ReportOutcome.DELAYED,
                status=status,
                diagnostic=one_line(words) or ("delivery failed" if hard else "delivery delayed"),
                soft=not hard or is_soft(code=code, status=status, permanent=True),
                code=code,
            )
        )
    return reports, bool(reports)


def paragraph(text: str, address: str) -> str:
    """The lines from the first that names ``address`` to the next blank line."""
    lower = text.lower()
    at = lower.find(address.lower())
    if at < 0:
        return ""
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n\n", at)
    end = len(text) if end < 0 else end
    return text[start : min(end, start + MAX_PARAGRAPH)]


def nameless(text: str) -> tuple[str | None, str, bool]:
    """A report that names no address: (status, the line that says it, soft)."""
    code, status = text_code(text)
    if code is None and status is None:
        return None, "", True
    found = _CODE_LINE.search(text)
    words = one_line(found.group(0)[:MAX_PARAGRAPH]) if found else ""
    return status, words, is_soft(code=code, status=status, permanent=False)

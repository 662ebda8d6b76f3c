"""The measured workload: one account, a letter with an included fragment, one case type."""

from __future__ import annotations

from typing import Any

from postroom.app import Postroom
from postroom.cases.emails import EmailRequest

CLASS_GROUP = "Bench-Letters"
CLASS_NAME = f"{CLASS_GROUP}-Notice"
LETTER = "Bench notice"
SIGNATURE = "Bench signature"
SENDER = "notices@example.com"

SIGNATURE_HTML = """\
<p style="margin-top: 24px;">Kind regards,<br>
<strong>{{ account.display_name }}</strong><br>
<a href="mailto:{{ account.address }}">{{ account.address }}</a></p>
<p style="font-size: 11px; color: #777;">You receive this message because a request was
registered in your name. Please do not reply to this address; use the contact details
of your branch instead.</p>
"""

LETTER_SUBJECT = "Request {{ case.id | default('notice') }} registered: {{ account.display_name }}"

LETTER_HTML = """\
{% set data = case.data | default({}) %}
<div style="font-family: Arial, Helvetica, sans-serif; font-size: 14px; color: #222;">
<p>Dear {{ data.applicant | default("customer") }},</p>
<p>Thank you for your request. We have registered it under reference
<strong>{{ data.reference | default(case.class_name) }}</strong> and a case worker of our
{{ data.branch | default("central") }} branch will look at it shortly. Below is a summary
of what we received; please check it and tell us at once if anything is wrong.</p>
<table style="border-collapse: collapse; margin: 16px 0;">
  <tr><td style="padding: 4px 12px; color: #555;">Reference</td>
      <td style="padding: 4px 12px;">{{ data.reference | default("-") }}</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Applicant</td>
      <td style="padding: 4px 12px;">{{ data.applicant | default("-") }}</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Amount</td>
      <td style="padding: 4px 12px;">{{ data.amount | default(0) }}
          {{ data.currency | default("EUR") }}</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Term</td>
      <td style="padding: 4px 12px;">{{ data.term_years | default(20) }} years</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Answer expected by</td>
      <td style="padding: 4px 12px;">{{ data.due_date | default("two weeks") }}</td></tr>
  <tr><td style="padding: 4px 12px; color: #555;">Status</td>
      <td style="padding: 4px 12px;">{{ case.status | default("New") }}</td></tr>
</table>
<p>What happens next:</p>
<ol>
  <li>We check the documents you sent with your request and ask for anything missing.</li>
  <li>Your case worker calls you to go through the details and answer your questions.</li>
  <li>You receive our decision in writing, together with the conditions of the offer.</li>
</ol>
<p>You can follow your request at any time in the customer portal under
<em>My requests</em>; keep the reference above at hand when you contact us, it lets us
find your file at once. Documents can be uploaded there as well: a scan or a clear
photo is enough, and you do not need to send the originals by post.</p>
{% include "Bench signature" %}
</div>
"""


def records(sink_port: int) -> dict[str, Any]:
    """One account on the sink, a letter with an included fragment, one case type."""
    return {
        "accounts": [
            {
                "name": CLASS_GROUP,
                "provider": "custom",
                "address": SENDER,
                "display_name": "Bench Notices",
                "host": "127.0.0.1",
                "port": sink_port,
                "security": "none",
            }
        ],
        "correspondence": [
            {"name": SIGNATURE, "html": SIGNATURE_HTML},
            {"name": LETTER, "subject": LETTER_SUBJECT, "html": LETTER_HTML},
        ],
        "case_types": [
            {
                "class": CLASS_NAME,
                "class_group": CLASS_GROUP,
                "label": "Bench notice",
                "id_prefix": "B-",
                "steps": [
                    {
                        "name": "Confirm the request",
                        "on": "created",
                        "to": [{"field": "email"}],
                        "correspondence": LETTER,
                    }
                ],
            }
        ],
    }


def recipient(i: int) -> str:
    return f"client{i}@example.com"


def case_data(i: int) -> dict[str, Any]:
    return {
        "email": recipient(i),
        "applicant": f"Client {i}",
        "reference": f"REQ-{i:06d}",
        "branch": ("north", "south", "east", "west")[i % 4],
        "amount": 100_000 + 250 * i,
        "currency": "EUR",
        "term_years": 10 + i % 21,
        "due_date": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}",
    }


def letter_request(i: int) -> EmailRequest:
    return EmailRequest.addressed(to=[recipient(i)], correspondence=LETTER)


def warm_up(postroom: Postroom) -> None:
    """Compile the templates once (not enqueued), as a running service would have."""
    with postroom.engine.connect() as conn:
        postroom.composer.batch(conn).compose(letter_request(0), class_name=CLASS_NAME)

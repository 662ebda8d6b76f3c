"""django-post-office, measured the way its users run it; runs in its own virtual environment.

    python peer_dpo.py --count N --port P --database FILE [--batch 500]

Enqueues N emails with ``mail.send_many`` (one call per batch), then delivers them with
``send_queued_mail`` (its management command, one process, its default batch settings)
to the SMTP server on 127.0.0.1:P, and prints one JSON object: the seconds of each
phase. The messages are an HTML part and a text part, about 2.6 KB on the wire
(Postroom's letter is longer: about 4 KB).
"""

from __future__ import annotations

import argparse
import json
import time

HTML = (
    "<div style='font-family: Arial, sans-serif'><p>Dear customer {n},</p>"
    "<p>Thank you for your request. We have registered it under reference "
    "<strong>R-{n}</strong> and a case worker will look at it shortly.</p>"
    + "<p>Below is a summary of what we received; please check it and tell us at once if "
    "anything is wrong. You can follow your request in the customer portal.</p>"
    * 6
    + "<p>Kind regards,<br><strong>Notices</strong></p></div>"
)
TEXT = (
    "Dear customer {n},\n\nThank you for your request. We have registered it under "
    "reference R-{n} and a case worker will look at it shortly.\n"
    + "Below is a summary of what we received; please check it and tell us at once if "
    "anything is wrong. You can follow your request in the customer portal.\n"
    * 4
    + "\nKind regards,\nNotices\n"
)


def configure(database: str, port: int) -> None:
    # Django's modules are imported only here and after: they need settings configured
    # first, and they exist only in the peer's virtual environment.
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415

    settings.configure(
        INSTALLED_APPS=["post_office"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": database}},
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=port,
        POST_OFFICE={"DEFAULT_PRIORITY": "medium", "MESSAGE_ID_ENABLED": True},
        USE_TZ=True,
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    configure(args.database, args.port)

    from django.core.management import call_command  # noqa: PLC0415
    from post_office import mail  # noqa: PLC0415

    call_command("migrate", verbosity=0)
    start = time.perf_counter()
    for first in range(0, args.count, args.batch):
        mail.send_many(
            [
                {
                    "sender": "Notices <notices@example.com>",
                    "recipients": [f"customer{n}@example.org"],
                    "subject": f"Request R-{n} registered",
                    "message": TEXT.format(n=n),
                    "html_message": HTML.format(n=n),
                }
                for n in range(first, min(first + args.batch, args.count))
            ]
        )
    enqueued = time.perf_counter()
    call_command("send_queued_mail", processes=1, verbosity=0)
    delivered = time.perf_counter()
    print(
        json.dumps(
            {
                "enqueue_seconds": enqueued - start,
                "delivery_seconds": delivered - enqueued,
                "end_to_end_seconds": delivered - start,
            }
        )
    )


if __name__ == "__main__":
    main()

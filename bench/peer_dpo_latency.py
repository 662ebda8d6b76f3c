"""django-post-office's latency at a steady rate, driven as its documentation shows.

    python peer_dpo_latency.py --rate 200 --seconds 30 --port P --database FILE [--interval 10]

The application thread queues one email per ``mail.send`` at ``--rate`` a second for
``--seconds``, each numbered in its Subject (``probe N``) for the timestamping sink
(``bench/stamp_sink.py``) on 127.0.0.1:P. Delivery is what the documentation gives for a
project without Celery: ``call_command('send_queued_mail', processes=1)`` on a timer every
10 seconds (its uWSGI example, ``@uwsgidecorators.timer(10)``; its cron line is once a
minute), here in a process of its own started by this script. A pass still running when
the timer fires holds the lock file, so that tick is skipped, as under uWSGI.

Prints one JSON object: ``enqueued`` as ``[N, before, after]`` (``time.monotonic()``
around each ``mail.send``), the sender's ``passes`` and how many emails were ``sent``.

``paced`` is also the pacing loop of Postroom's runs (``bench/latency.py``): both sides
are driven by the same code. This module imports Django only in functions, so that
Postroom's benchmark can import it without Django.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from peer_dpo import HTML, TEXT

Sample = tuple[int, float, float]  # probe number, monotonic seconds before and after the call
START_DELAY = 0.1  # seconds between arranging the lanes and the first send
# A driver that falls this far behind (a machine too busy for the rate) stops sending at
# this multiple of the run's length: the run is then shorter, never endless.
OVERRUN = 2.0


def subject(number: int) -> str:
    return f"Latency probe {number}"


def paced(
    send: Callable[[int], object], *, rate: float, seconds: float, lanes: int = 1
) -> list[Sample]:
    """``send(n)`` for n from 0 to rate * seconds - 1, each at its slot ``n / rate``.

    Each of ``lanes`` threads takes every ``lanes``-th slot, so one slow call holds back
    only its own lane; a lane that falls behind sends at once until it catches up, and
    stops at ``OVERRUN`` times ``seconds``. The first exception stops every lane and is
    raised here.
    """
    count = round(rate * seconds)
    start = time.monotonic() + START_DELAY
    give_up = start + OVERRUN * seconds
    samples: list[Sample] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def lane(first: int) -> None:
        for number in range(first, count, lanes):
            if stop.wait(max(0.0, start + number / rate - time.monotonic())):
                return
            if time.monotonic() > give_up:
                return
            before = time.monotonic()
            try:
                send(number)
            except BaseException as exc:  # re-raised in the caller's thread
                with lock:
                    failures.append(exc)
                stop.set()
                return
            after = time.monotonic()
            with lock:
                samples.append((number, before, after))

    threads = [threading.Thread(target=lane, args=(k,), daemon=True) for k in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sorted(samples)


# --- django-post-office's side (its own virtual environment) -----------------------------


def configure(database: str, port: int) -> None:
    """Django as a small project with post_office would set it, on SQLite."""
    # Imported here: Django exists only in the peer's virtual environment.
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415

    settings.configure(
        INSTALLED_APPS=["post_office"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": database,
                # Two processes write (the application and the timer's send_queued_mail):
                # IMMEDIATE transactions and a long timeout are Django's advice for that.
                "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            }
        },
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
    # post_office's logger says every pass at INFO; a project would keep that out of its log.
    logging.getLogger("post_office").setLevel(logging.WARNING)


def stdin_closed_within(seconds: float) -> bool:
    """Wait up to ``seconds`` for our stdin to close (the parent's stop)."""
    readable, _, _ = select.select([sys.stdin], [], [], max(0.0, seconds))
    return bool(readable) and not sys.stdin.readline()


def run_sender(args: argparse.Namespace) -> None:
    """The timer: ``send_queued_mail`` every ``--interval`` s until stdin closes."""
    configure(args.database, args.port)
    from django.core.management import call_command  # noqa: PLC0415

    print("ready", flush=True)
    passes = 0
    ends = time.monotonic() + args.max_seconds
    tick = time.monotonic() + args.interval
    while time.monotonic() < ends and not stdin_closed_within(tick - time.monotonic()):
        call_command("send_queued_mail", processes=1, lockfile=args.lockfile, verbosity=0)
        passes += 1
        while tick <= time.monotonic():
            tick += args.interval  # a pass that outlasted its tick skips it
    print(json.dumps({"passes": passes}), flush=True)


def sent_count() -> int:
    from post_office.models import STATUS, Email  # noqa: PLC0415

    count: int = Email.objects.filter(status=STATUS.sent).count()
    return count


def run_application(args: argparse.Namespace) -> None:
    configure(args.database, args.port)
    from django.core.management import call_command  # noqa: PLC0415
    from post_office import mail  # noqa: PLC0415

    call_command("migrate", verbosity=0)
    sender = subprocess.Popen(
        [sys.executable, __file__, "--sender", "--port", str(args.port),
         "--database", args.database, "--interval", str(args.interval),
         "--lockfile", args.lockfile, "--max-seconds", str(args.max_seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sender.stdin is not None
    assert sender.stdout is not None
    try:
        if sender.stdout.readline().strip() != "ready":
            raise SystemExit(f"the sender process did not start (exit code {sender.poll()})")

        def send(n: int) -> None:
            mail.send(
                [f"customer{n}@example.org"],
                "Notices <notices@example.com>",
                subject=subject(n),
                message=TEXT.format(n=n),
                html_message=HTML.format(n=n),
            )

        started = time.process_time()
        samples = paced(send, rate=args.rate, seconds=args.seconds, lanes=args.lanes)
        # Until the timer has sent them all, bounded: two intervals and the settle time.
        deadline = time.monotonic() + 2 * args.interval + args.settle
        while (sent := sent_count()) < len(samples) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sender.stdin.close()
        try:
            sender.wait(timeout=args.settle)
        except subprocess.TimeoutExpired:
            sender.kill()
            sender.wait()
    passes = json.loads(sender.stdout.readline() or '{"passes": null}')["passes"]
    cpu = {
        "application": time.process_time() - started,
        "sender": _cpu(resource.RUSAGE_CHILDREN),  # the sender, waited for above
    }
    print(json.dumps({"enqueued": samples, "passes": passes, "sent": sent, "cpu": cpu}))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--lanes", type=int, default=1, help="threads that send")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between passes")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait at most")
    parser.add_argument("--lockfile", help="send_queued_mail's lock (default: beside --database)")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.lockfile = args.lockfile or str(Path(args.database).with_suffix(".lock"))
    if args.sender:
        run_sender(args)
    else:
        run_application(args)


if __name__ == "__main__":
    main()

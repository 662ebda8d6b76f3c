"""The composing process: renders and builds the emails of a shard of a batch."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Sequence

from sqlalchemy import Connection

from postroom.accounts import AccountStore
from postroom.cases.emails import Composer, Composition, EmailRequest
from postroom.composing.plan import Plan, Shard
from postroom.correspondence import Renderer
from postroom.keystores.store import KeystoreStore
from postroom.operators import OperatorStore
from postroom.outbox.models import NewEmail
from postroom.proctitle import name_process
from postroom.security import SecretBox
from postroom.signing.sealer import Sealer
from postroom.text import check_email

# One per process: templates compile once per version of the records, not per shard.
_renderer: tuple[str, Renderer] | None = None
_composer: Composer | None = None


def _no_renderer(conn: Connection) -> Renderer:
    raise AssertionError("a detached composition is given its renderer")


def _composition(plan: Plan) -> Composition:
    global _renderer, _composer  # noqa: PLW0603 - the process's caches
    if _renderer is None or _renderer[0] != plan.snapshot:
        _renderer = (
            plan.snapshot,
            Renderer(plan.records, versions=plan.versions, time_limit=plan.time_limit),
        )
    if _composer is None:
        # The stores are never read (see Composition.detached); the key only satisfies them.
        box = SecretBox(secrets.token_bytes(32))
        _composer = Composer(
            accounts=AccountStore(box),
            operators=OperatorStore(),
            renderer=_no_renderer,
            seal=Sealer(KeystoreStore(box)).seal,
        )
    chosen = (plan.class_name, plan.class_group, plan.resolution, plan.account)
    return Composition.detached(_renderer[1], composer=_composer, chosen=chosen)


OWNER_CHECK_SECONDS = 1.0


def watch_owner(owner: int) -> None:
    """Exit when the process that started the pool is gone (killed without closing it).

    The pool's processes are children of the fork server, not of their owner: nothing
    else tells them that their owner died.
    """

    name_process(f"composing (for {owner})")

    def watch() -> None:
        while True:
            time.sleep(OWNER_CHECK_SECONDS)
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                continue  # alive, as another user's process (a reused pid): keep going

    threading.Thread(target=watch, name="postroom-owner-watch", daemon=True).start()


def ready() -> bool:
    """Nothing: called once per process when the pool starts, so that each is started."""
    return True


def compose_shard(plan: Plan, start: int, requests: Sequence[EmailRequest]) -> Shard:
    """The rows of each request from ``start`` on, stopping at the first that fails.

    The failure itself is not sent back: the caller composes that request again, in its
    own process, and raises exactly the error the serial path raises.
    """
    composition = _composition(plan)
    done: list[tuple[NewEmail, ...]] = []
    for number, request in enumerate(requests, start):
        try:
            check_email(request, prefix=f"emails.{number}.")
            composed = composition.compose(
                request, class_name=plan.class_name, class_group=plan.class_group, name_fields=True
            )
        except Exception:
            return Shard(start, tuple(done), failed=True)
        done.append(composed.emails)
    return Shard(start, tuple(done), failed=False)

"""``postroom serve``, ``postroom admin …`` and ``postroom tokens …``: the service."""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from postroom.app import Postroom
from postroom.cli.common import (
    JsonOption,
    configure_logging,
    console,
    id_column,
    opened,
    port_option,
    print_json,
    run_command,
    state,
    styled,
    table,
    where,
)
from postroom.cli.preflight import check_can_listen, free_port
from postroom.demo import demo_environment, live_agents
from postroom.devinbox.server import DEFAULT_DIRECTORY
from postroom.errors import ConfigurationError, NotFoundError, StateError
from postroom.identity import Scope
from postroom.identity.tokens import ApiToken

admin_app = typer.Typer(help="Admin Studio users: create, list, set a password.")
tokens_app = typer.Typer(help="REST API tokens: create, list, revoke.", no_args_is_help=True)
DEMO_ADMIN = "admin"


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (env POSTROOM_HOST)")] = None,
    port: Annotated[int | None, port_option("Port (env POSTROOM_PORT)")] = None,
    max_request_bytes: Annotated[
        int | None,
        typer.Option(help="Largest request body accepted (env POSTROOM_MAX_REQUEST_BYTES)"),
    ] = None,
    no_agent: Annotated[
        bool, typer.Option("--no-agent", help="Do not run a sender agent in this process")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Run the sender agent as this many processes "
            "(env POSTROOM_WORKERS; default: the agent in this process)",
            show_default=False,
        ),
    ] = None,
    no_inbound: Annotated[
        bool,
        typer.Option("--no-inbound", help="Read no mailboxes here (env POSTROOM_INBOUND=false)"),
    ] = False,
    no_webhooks: Annotated[
        bool,
        typer.Option(
            "--no-webhooks", help="Deliver no webhook events here (env POSTROOM_WEBHOOKS=false)"
        ),
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(help="Start the dev inbox, apply the example and print a login"),
    ] = False,
    config: Annotated[Path, typer.Option(help="Records applied with --demo")] = Path(
        "examples/mortgage.yaml"
    ),
    inbox_dir: Annotated[Path, typer.Option(help="Dev inbox folder")] = DEFAULT_DIRECTORY,
    inbox_port: Annotated[
        int | None, port_option("Dev inbox port [default: 1025, or a free one when it is taken]")
    ] = None,
) -> None:
    """Run the REST API (/api/v1), the Admin Studio (/) and a sender agent."""

    def body() -> None:
        if no_agent and workers is not None:
            raise ConfigurationError(
                "--no-agent and --workers cannot go together: "
                "--workers sets how many processes run the agent"
            )
        flags = {
            "host": host,
            "port": port,
            "max_request_bytes": max_request_bytes,
            "inbound": False if no_inbound else None,
            "webhooks": False if no_webhooks else None,
            "workers": workers,
        }
        given = {k: v for k, v in flags.items() if v is not None}
        settings = state.settings(**given)
        configure_logging(settings.log_level)
        # Said before anything starts: uvicorn would say it after the agent had started,
        # and exit with a code of its own; the dev inbox after a 10 s timeout.
        check_can_listen(
            settings.host,
            settings.port,
            flag="--port or POSTROOM_PORT",
            host_flag="--host or POSTROOM_HOST",
        )
        chosen_inbox_port = 0
        if demo:
            if inbox_port is not None:
                check_can_listen("127.0.0.1", inbox_port, flag="--inbox-port")
            if not config.is_file():
                raise ConfigurationError(
                    f"no example records at {config}: run from Postroom's folder, or give --config"
                )
            chosen_inbox_port = inbox_port or free_port(preferred=1025)
        # The web stack loads only now: other commands, and a refusal, come sooner without it.
        import uvicorn  # noqa: PLC0415

        from postroom.server import create_app  # noqa: PLC0415

        # A service creates its database when there is none (`make run` on a fresh clone).
        with opened(create=True, wait=True, **given) as postroom, contextlib.ExitStack() as stack:
            inbox = None
            if demo:
                _refuse_a_used_database(postroom, port=chosen_inbox_port)
                inbox, report = stack.enter_context(
                    demo_environment(
                        postroom, config=config, inbox_dir=inbox_dir, port=chosen_inbox_port
                    )
                )
                console.print(f"applied {config}: {len(report.changes)} records")
                taken = "" if inbox_port or chosen_inbox_port == 1025 else "port 1025 is taken: "
                console.print(
                    f"{taken}dev inbox on 127.0.0.1:{chosen_inbox_port}, keeping mail in "
                    f"{inbox_dir}"
                )
                _print_demo_login(postroom)
            elif not postroom.identity.admins():
                console.print("no admin user yet: create one with `postroom admin create NAME`")
            # One worker is the agent in this process, as without the setting.
            agent_workers = settings.workers if (settings.workers or 1) > 1 else None
            app = create_app(
                postroom,
                run_agent=not no_agent,
                agent_workers=agent_workers,
                run_inbound=settings.inbound,
                run_webhooks=settings.webhooks,
                inbox_dir=inbox_dir if demo else None,
                inbox=inbox,
            )
            url = f"http://{settings.host}:{settings.port}/"
            console.print(styled(("Admin Studio: ", "bold"), url))
            console.print(styled(("REST API:     ", "bold"), url + "api/v1"))
            if no_agent:
                console.print("agent: not in this process")
            elif agent_workers:
                console.print(f"agent: {agent_workers} worker processes")
            else:
                console.print("agent: running")
            console.print(
                "inbound: " + ("listening" if settings.inbound else "not in this process")
            )
            console.print(
                "webhooks: " + ("delivering" if settings.webhooks else "not in this process")
            )
            server = uvicorn.Server(
                uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")
            )
            # uvicorn shuts down gracefully, then re-raises the signal it captured. SIGTERM
            # is taken as Ctrl-C is, so a service manager's stop ends with "stopped", exit 0.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            with contextlib.suppress(KeyboardInterrupt):
                server.run()
            console.print("stopped")

    run_command(body)


def _refuse_a_used_database(postroom: Postroom, *, port: int) -> None:
    """--demo repoints the example's accounts: never under a service already running."""
    agents = live_agents(postroom)
    if agents:
        a = agents[0]
        raise StateError(
            f"a running service uses database {where(postroom.settings.database_url)} "
            f"(agent {a.id}, pid {a.pid} on {a.host}): --demo would point its accounts at "
            f"127.0.0.1:{port}; stop it, or give this one another --database-url"
        )


def _print_demo_login(postroom: Postroom) -> None:
    if any(a.username == DEMO_ADMIN for a in postroom.identity.admins()):
        console.print(
            f"log in as {DEMO_ADMIN!r} with the password printed when it was created "
            f"(a new one: postroom admin password {DEMO_ADMIN})"
        )
        return
    password = secrets.token_urlsafe(12)
    postroom.identity.create_admin(username=DEMO_ADMIN, password=password)
    # Printed this once; only its argon2 hash is kept.
    console.print(
        styled(("Log in as:    ", "bold"), f"{DEMO_ADMIN}  password: {password}  (shown once)")
    )


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = typer.prompt("password", hide_input=True)
    if typer.prompt("again", hide_input=True) != first:
        raise ConfigurationError("the two passwords differ")
    return str(first)


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input")
]


@admin_app.command("create")
def create_admin(username: str, password_stdin: PasswordStdin = False) -> None:
    """Create an Admin Studio user (the password is asked for, never an argument)."""

    def body() -> None:
        with opened(create=True) as postroom:
            # Checked before the prompts: typing a password twice only to learn that the
            # name is taken wastes both.
            with postroom.engine.connect() as conn:
                if postroom.identity.users.exists(conn, username.strip()):
                    raise ConfigurationError(
                        f"an admin user named {username.strip()!r} already exists"
                    )
            password = _read_password(password_stdin)
            user = postroom.identity.create_admin(username=username, password=password)
        console.print(f"admin user {user.username} created")

    run_command(body)


@admin_app.command("password")
def set_password(username: str, password_stdin: PasswordStdin = False) -> None:
    """Set a new password for an Admin Studio user."""

    def body() -> None:
        with opened() as postroom:
            with postroom.engine.connect() as conn:
                if not postroom.identity.users.exists(conn, username):
                    raise NotFoundError(f"no admin user named {username!r}")
            password = _read_password(password_stdin)
            with postroom.engine.begin() as conn:
                postroom.identity.users.set_password(conn, username=username, password=password)
        console.print(f"password of {username} changed")

    run_command(body)


@admin_app.command("list")
def list_admins(json: JsonOption = False) -> None:
    """List Admin Studio users."""

    def body() -> None:
        with opened() as postroom:
            users = postroom.identity.admins()
        if json:
            print_json([{"username": u.username, "created_at": u.created_at} for u in users])
            return
        rows = table("username", "created")
        for u in users:
            rows.add_row(u.username, f"{u.created_at:%Y-%m-%d %H:%M}")
        console.print(rows)

    run_command(body)


@tokens_app.command("create")
def create_token(
    name: Annotated[str, typer.Argument(help="Who or what uses the token")],
    scope: Annotated[list[Scope], typer.Option(help="send or admin (repeatable)")],
) -> None:
    """Create an API token; its value is printed once and only its hash is kept."""

    def body() -> None:
        with opened(create=True) as postroom:
            issued = postroom.identity.create_token(name=name, scopes=set(scope))
        console.print(f"token {issued.token.id} ({', '.join(sorted(issued.token.scopes))}):")
        console.print(issued.value)
        console.print("keep it now: it cannot be shown again")

    run_command(body)


@tokens_app.command("list")
def list_tokens(json: JsonOption = False) -> None:
    """List API tokens (never their values)."""

    def body() -> None:
        with opened() as postroom:
            tokens = postroom.identity.list_tokens()
        if json:
            print_json([token_json(t) for t in tokens])
            return
        rows = table(id_column("id", (t.id for t in tokens)), "name", "scopes", "created",
                     "last used", "state")  # fmt: skip
        for t in tokens:
            rows.add_row(
                t.id,
                t.name,
                ", ".join(sorted(t.scopes)),
                f"{t.created_at:%Y-%m-%d %H:%M}",
                f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
                f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active",
            )
        console.print(rows)

    run_command(body)


@tokens_app.command("revoke")
def revoke_token(token_id: str) -> None:
    """Revoke an API token: requests with it are refused from now on."""

    def body() -> None:
        with opened() as postroom:
            token = postroom.identity.revoke_token(token_id)
        console.print(f"token {token.id} ({token.name}) revoked")

    run_command(body)


def token_json(t: ApiToken) -> dict[str, Any]:
    """An API token as ``tokens list --json`` prints it: never its value."""
    return {
        "id": t.id,
        "name": t.name,
        "scopes": sorted(t.scopes),
        "created_at": t.created_at,
        "last_used_at": t.last_used_at,
        "revoked_at": t.revoked_at,
    }

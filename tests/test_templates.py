"""The template sandbox, end to end: a case, its send-email step, the agent and a real server."""

from __future__ import annotations

import asyncio
import html
import resource
import sqlite3
import subprocess
import sys
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from postroom import Postroom
from postroom.cases import Case
from postroom.correspondence.render import MAX_RENDERED_CHARS, Renderer
from postroom.errors import ConfigurationError, TemplateLimitError
from postroom.outbox import OutboxEntry, OutboxStatus
from tests.conftest import case_type_with
from tests.fakes import Received, ServerInfo

CASE_TYPE = "MyOrg-Tpl-Work-Letter"
CLIENT = "client@example.com"


def records(
    port: int,
    *,
    html: str = "<p>Dear client, about {{ case.data.title }}.</p>",
    subject: str = "Case {{ case.id }}: {{ case.data.title }}",
    text: str | None = None,
    step: dict[str, Any] | None = None,
) -> dict[str, Any]:
    letter: dict[str, Any] = {"name": "Letter", "subject": subject, "html": html}
    if text is not None:
        letter["text"] = text
    return {
        "accounts": [
            {
                "name": "Default",
                "address": "letters@example.com",
                "display_name": "Letters Desk",
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
            }
        ],
        "correspondence": [
            letter,
            {"name": "Signature", "html": "<p>Regards, {{ account.display_name }}</p>"},
        ],
        "case_types": [
            {
                "class": CASE_TYPE,
                "class_group": "MyOrg-Tpl-Work",
                "id_prefix": "L-",
                "steps": [
                    step
                    or {
                        "name": "letter",
                        "on": "created",
                        "to": [{"address": CLIENT}],
                        "correspondence": "Letter",
                    }
                ],
            }
        ],
    }


def run(
    postroom: Postroom, server: ServerInfo, data: dict[str, Any], **kwargs: Any
) -> tuple[Case, list[Received]]:
    """Apply the records, create a case, run the agent; the case and what was received."""
    postroom.apply(records(server.port, **kwargs))
    before = len(server.sink.received)
    created = postroom.cases.create(CASE_TYPE, data=data)
    asyncio.run(postroom.agent().run(until_idle=True))
    return postroom.cases.get(created.id), server.sink.received[before:]


def failed_entry(postroom: Postroom, case: Case) -> OutboxEntry:
    [entry] = postroom.outbox(case_id=case.id)
    assert entry.status is OutboxStatus.FAILED
    assert entry.last_error
    return entry


def failure_detail(case: Case) -> str:
    [detail] = [h.detail for h in case.history if h.action == "email-failed"]
    return detail


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    content: str = part.get_content()
    return content


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


# --- sandbox escapes --------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c.__name__ }}{% endfor %}",
    "{{ case.data.__class__ }}",
    "{{ case|attr('__class__') }}",
    "{{ '{0.__class__}'.format(case) }}",
    "{{ case.data.update({'title': 'changed'}) }}",
    "{{ range.__self__ }}",
    "{{ ''.format.__self__ }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
@pytest.mark.parametrize("where", ["html", "subject", "inline"])
def test_sandbox_escape_fails_the_email_not_the_case(
    sqlite_postroom: Postroom, server: ServerInfo, payload: str, where: str
) -> None:
    kwargs: dict[str, Any] = {}
    if where == "html":
        kwargs["html"] = f"<p>{payload}</p>"
    elif where == "subject":
        kwargs["subject"] = f"Case {payload}"
    else:
        kwargs["step"] = {
            "name": "inline letter",
            "on": "created",
            "to": [{"address": CLIENT}],
            "subject": "Inline",
            "body": f"<p>{payload}</p>",
        }
    case, received = run(sqlite_postroom, server, {"title": "Boiler"}, **kwargs)

    assert received == []
    assert case.status == "New"
    assert case.data == {"title": "Boiler"}
    assert [h.action for h in case.history] == ["created", "email-failed"]
    error = failed_entry(sqlite_postroom, case).last_error
    assert error is not None
    assert (
        "sandbox refused an unsafe expression" in error
        or "undefined" in error
        or "has no attribute" in error
    ), error
    assert failure_detail(case).endswith(error)
    # Nothing ran and nothing leaked into the error: no command output, no class listing.
    assert "uid=" not in error
    assert "<class '" not in error
    assert sqlite_postroom.outbox_counts()[OutboxStatus.QUEUED] == 0


def test_sandbox_refusals_name_the_unsafe_attribute(
    sqlite_postroom: Postroom, server: ServerInfo
) -> None:
    case, received = run(sqlite_postroom, server, {"title": "t"}, html="{{ ''.__class__.__mro__ }}")
    assert received == []
    error = failed_entry(sqlite_postroom, case).last_error
    assert error is not None
    assert "correspondence 'Letter'" in error
    assert "sandbox refused an unsafe expression" in error
    assert "__class__" in error


# --- case data is data, never template source -------------------------------------------

LITERALS = [
    "{{7*7}} {% if 1 %}x{% endif %}",
    "{{ 7 * 7 }}",
    "{% for i in range(3) %}{{ i }}{% endfor %}",
    "{{ case.id }}",
    "{# comment #}",
    "${HOME} ${POSTROOM_SECRET_KEY}",
    "{{ ''.__class__.__mro__ }}",
]


@pytest.mark.parametrize("value", LITERALS)
def test_template_syntax_in_case_data_is_printed_literally(
    sqlite_postroom: Postroom, server: ServerInfo, value: str
) -> None:
    case, received = run(
        sqlite_postroom,
        server,
        {"title": value},
        text="Plain: {{ case.data.title }}",
    )
    [got] = received
    msg = got.message
    assert str(msg["Subject"]) == f"Case {case.id}: {value}"
    assert f"about {value}." in html.unescape(html_of(msg))
    assert f"Plain: {value}" in text_of(msg)
    for shown in (str(msg["Subject"]), html_of(msg), text_of(msg)):
        assert "49" not in shown
        assert "012" not in shown
        assert "/root" not in shown
    assert [h.action for h in case.history] == ["created", "email-queued", "email-sent"]


def test_html_part_escapes_case_data_and_text_part_keeps_it(
    sqlite_postroom: Postroom, server: ServerInfo
) -> None:
    note = "<script>alert('x')</script> & \"quoted\" <b>bold</b>"
    _, received = run(sqlite_postroom, server, {"title": note})
    [got] = received
    body = html_of(got.message)
    assert "<script>" not in body
    assert "<b>" not in body
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;quoted&#34;" in body
    # The plain-text part is derived from the HTML: the reader sees the characters typed.
    assert note in text_of(got.message)
    assert str(got.message["Subject"]).endswith(note)


def test_html_written_by_the_template_author_is_kept(
    sqlite_postroom: Postroom, server: ServerInfo
) -> None:
    _, received = run(
        sqlite_postroom,
        server,
        {"title": "t"},
        html="<p><b>Bold</b> {{ '<i>escaped</i>' }} {{ '<u>trusted</u>' | safe }}</p>",
    )
    body = html_of(received[0].message)
    assert "<b>Bold</b>" in body
    assert "&lt;i&gt;escaped&lt;/i&gt;" in body
    assert "<u>trusted</u>" in body


# --- missing fields, defaults and includes ----------------------------------------------


def test_missing_field_fails_clearly_and_names_it(
    sqlite_postroom: Postroom, server: ServerInfo
) -> None:
    case, received = run(
        sqlite_postroom,
        server,
        {"title": "t"},
        html="<p>Loan {{ case.data.loan_amount }}</p>",
    )
    assert received == []
    error = failed_entry(sqlite_postroom, case).last_error
    assert error is not None
    assert "loan_amount" in error
    assert "default" in error
    assert "loan_amount" in failure_detail(case)


def test_default_filter_fills_a_missing_field(
    sqlite_postroom: Postroom, server: ServerInfo
) -> None:
    _, received = run(
        sqlite_postroom,
        server,
        {"title": "t"},
        html='<p>Loan {{ case.data.loan_amount | default("to be agreed") }}</p>',
        subject='Loan {{ case.data.loan_amount | default("tba") }}',
    )
    [got] = received
    assert "Loan to be agreed" in html_of(got.message)
    assert str(got.message["Subject"]) == "Loan tba"


def test_include_of_a_fragment(sqlite_postroom: Postroom, server: ServerInfo) -> None:
    _, received = run(
        sqlite_postroom,
        server,
        {"title": "t"},
        html='<p>Hello</p>{% include "Signature" %}',
    )
    [got] = received
    assert "Regards, Letters Desk" in html_of(got.message)
    assert "Regards, Letters Desk" in text_of(got.message)


def test_include_of_a_fragment_from_an_inline_step(
    sqlite_postroom: Postroom, server: ServerInfo
) -> None:
    step = {
        "on": "created",
        "to": [{"address": CLIENT}],
        "subject": "Inline {{ case.data.title }}",
        "body": '<p>Hi</p>{% include "Signature" %}',
    }
    _, received = run(sqlite_postroom, server, {"title": "t"}, step=step)
    [got] = received
    assert str(got.message["Subject"]) == "Inline t"
    assert "Regards, Letters Desk" in html_of(got.message)


def test_include_of_an_unknown_name_is_refused_by_apply(
    sqlite_postroom: Postroom, server: ServerInfo
) -> None:
    with pytest.raises(ConfigurationError, match="unknown correspondence 'No Such Fragment'"):
        sqlite_postroom.apply(
            records(server.port, html='<p>Hello</p>{% include "No Such Fragment" %}')
        )
    assert sqlite_postroom.outbox() == []


def test_a_fragment_cannot_be_sent_on_its_own(
    sqlite_postroom: Postroom, server: ServerInfo
) -> None:
    step = {"on": "created", "to": [{"address": CLIENT}], "correspondence": "Signature"}
    case, received = run(sqlite_postroom, server, {"title": "t"}, step=step)
    assert received == []
    error = failed_entry(sqlite_postroom, case).last_error
    assert error is not None
    assert "fragment" in error


def test_syntax_error_is_refused_by_apply(sqlite_postroom: Postroom, server: ServerInfo) -> None:
    with pytest.raises(ConfigurationError, match="syntax error on line 1"):
        sqlite_postroom.apply(records(server.port, html="<p>{% if case.data.title %}open</p>"))
    with sqlite_postroom.engine.connect() as conn:
        assert sqlite_postroom.correspondence_store.all(conn) == {}


def test_inline_step_syntax_error_is_refused_by_apply(sqlite_postroom: Postroom) -> None:
    bad = case_type_with(
        {
            "on": "created",
            "to": [{"address": "x@example.com"}],
            "subject": "{{ oops",
            "body": "<p>b</p>",
        }
    )
    with pytest.raises(ConfigurationError, match="syntax error"):
        sqlite_postroom.apply(bad)


# --- output size and rendering time -----------------------------------------------------

HUGE = "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}"


def test_huge_output_fails_clearly(sqlite_postroom: Postroom, server: ServerInfo) -> None:
    case, received = run(sqlite_postroom, server, {"title": "t"}, html=HUGE)
    assert received == []
    error = failed_entry(sqlite_postroom, case).last_error
    assert error is not None
    assert f"rendered to more than {MAX_RENDERED_CHARS} characters" in error


_RENDER_IN_CHILD = r"""
import sys
from postroom.correspondence.models import Correspondence
from postroom.correspondence.render import Renderer
from postroom.errors import ConfigurationError, TemplateError

renderer = Renderer({"T": Correspondence(name="T", subject="s", html=sys.argv[1])})
try:
    renderer.render("T", {"case": {"data": {}}})
except TemplateError as exc:
    print("refused:", exc)
else:
    print("rendered")
"""


def render_in_child(source: str, *, seconds: float) -> str:
    """Render in a child process limited to 1 GiB of address space and ``seconds``."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    try:
        done = subprocess.run(
            [sys.executable, "-c", _RENDER_IN_CHILD, source],
            capture_output=True,
            text=True,
            timeout=seconds,
            preexec_fn=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    if done.returncode != 0:
        return f"crashed: {done.stderr.strip().splitlines()[-1]}"
    return done.stdout.strip()


def test_output_of_ten_billion_characters_stops_at_the_limit() -> None:
    # Ten billion characters: only stopping at the limit keeps this within 1 GiB and seconds.
    outcome = render_in_child(
        "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
        seconds=60,
    )
    assert outcome.startswith("refused:"), outcome
    assert f"more than {MAX_RENDERED_CHARS} characters" in outcome


def test_rendering_is_bounded_in_time() -> None:
    # The limit is the renderer's 2 s; the child's 60 s only stops a hang (and leaves
    # room for starting Python on a loaded machine).
    outcome = render_in_child(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        seconds=60,
    )
    assert outcome.startswith("refused:"), outcome


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**10 }}",
        "{{ 10**10 * 'x' }}",
        "{{ 'x'.ljust(10**10) }}",
        "{{ 2 ** 100000000 }}",
        "{{ '%*s' % (10**10, 'x') }}",
        "{{ ['x'] * 10**10 }}",
    ],
)
def test_a_single_huge_expression_is_refused(source: str) -> None:
    outcome = render_in_child(source, seconds=30)
    assert outcome.startswith("refused:"), outcome


# --- a template's own runtime errors ---------------------------------------------------

RUNTIME_ERRORS = [
    ("{{ 'x'|xmlattr }}", "AttributeError"),
    ("{{ 'x'|truncate(-1) }}", "AssertionError"),
    ("{{ {'a': 1}|dictsort(by='x') }}", "FilterArgumentError"),
    # Named by an expression: only rendering finds out (a constant name is refused when
    # the template is applied, see test_formatting).
    ("{{ [1]|select('nosuch' ~ 'test')|list }}", "No test named 'nosuchtest'"),
    ("{{ [1]|map('nosuch' ~ 'filter')|list }}", "No filter named 'nosuchfilter'"),
    ("{{ cycler()|string }}", "RuntimeError"),
]


@pytest.mark.parametrize(("body", "named"), RUNTIME_ERRORS)
def test_whatever_a_template_raises_fails_its_email_not_the_case(
    sqlite_postroom: Postroom, server: ServerInfo, body: str, named: str
) -> None:
    step = {"on": "created", "to": [{"address": CLIENT}], "subject": "S", "body": body}
    case, received = run(sqlite_postroom, server, {"title": "Boiler"}, step=step)
    assert received == []
    assert [h.action for h in case.history] == ["created", "email-failed"]
    error = failed_entry(sqlite_postroom, case).last_error or ""
    assert named in error


NESTED = [
    "{{ " + "(" * 300 + "1" + ")" * 300 + " }}",
    "{{ " + "[" * 300 + "1" + "]" * 300 + " }}",
    "{{ " + "not " * 600 + "1 }}",
    "{% if 1 %}" * 600 + "x" + "{% endif %}" * 600,
]


@pytest.mark.parametrize("source", NESTED, ids=["parens", "lists", "not", "ifs"])
def test_nesting_too_deep_is_a_clear_refusal(sqlite_postroom: Postroom, source: str) -> None:
    sqlite_postroom.apply(
        {"accounts": [{"name": "Default", "address": "a@example.com", "host": "127.0.0.1"}]}
    )
    with pytest.raises(TemplateLimitError, match="nested too deeply"):
        sqlite_postroom.send(to=[CLIENT], subject="s", body=source, template=True)
    with pytest.raises(ConfigurationError, match="nested too deeply"):
        sqlite_postroom.apply(
            {"correspondence": [{"name": "Deep", "subject": "s", "html": source}]}
        )


# --- rendering does not hold SQLite's write lock ---------------------------------------

# Each step scans a long string: legal, but it runs into the 2 s time limit.
SLOW = (
    "{% set s = 'a' * 900000 %}{% for i in range(40000) %}"
    "{% if s.count('b') %}{% endif %}{% endfor %}"
)


def test_a_slow_ad_hoc_template_does_not_hold_the_write_lock(
    sqlite_postroom: Postroom, tmp_path: Path
) -> None:
    pr = sqlite_postroom
    pr.apply({"accounts": [{"name": "Default", "address": "a@example.com", "host": "127.0.0.1"}]})
    began = threading.Event()
    slow_thread: list[threading.Thread] = []

    def on_begin(_conn: Any) -> None:
        if slow_thread and threading.current_thread() is slow_thread[0]:
            began.set()

    failures: list[BaseException] = []

    def slow_send() -> None:
        try:
            pr.send(to=[CLIENT], subject="s", body=SLOW, template=True)
        except BaseException as exc:  # the time limit ends it, as it should
            failures.append(exc)

    event.listen(pr.engine, "begin", on_begin)
    slow_thread.append(threading.Thread(target=slow_send))
    slow_thread[0].start()
    try:
        assert began.wait(10), "the slow send never began a transaction"
        # Right after its first BEGIN the slow send is reading and rendering for ~2 s:
        # another writer must get the write lock at once, not wait for the template.
        other = sqlite3.connect(tmp_path / "postroom.db", timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert slow_thread[0].is_alive(), "the template finished too soon to tell"
    finally:
        slow_thread[0].join(30)
        event.remove(pr.engine, "begin", on_begin)
    [error] = failures
    assert isinstance(error, TemplateLimitError)


@pytest.mark.parametrize(
    ("body", "rendered"),
    [
        ("{{ range(10)[2] }}", "2"),
        ("{{ range(10)[2:4]|list }}", "[2, 3]"),
        ("{{ range(10)|last }}", "9"),
        ("{{ (range(3)|random) in [0, 1, 2] }}", "True"),
    ],
)
def test_a_range_indexes_as_python_s_does(body: str, rendered: str) -> None:
    assert Renderer({}).render_inline(subject="s", body=body, context={}).html == rendered

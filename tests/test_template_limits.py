"""Templates cannot take the process down: amplification is refused before it allocates.

Every payload renders as an ad-hoc subject (what a ``send``-scope caller may write) in one
child process whose address space is capped at its baseline plus 64 MB, so that an
unbounded allocation ends in MemoryError there instead of passing. Before each payload
the child resets its peak RSS (``/proc/self/clear_refs``), so the peak delta is that
payload's own. The peak is read as VmHWM, the process's own ``ru_maxrss``: getrusage also
keeps the peak of the image the child was exec'd from (a forked pytest), which would hide
every delta. The figures go to test-artifacts/template-limits.txt.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from pprint import pformat
from typing import Any

import pytest

from postroom import Postroom
from postroom.correspondence.limits import MAX_BUILT_CHARS, MAX_RENDERED_CHARS, RENDER_SECONDS
from postroom.correspondence.models import Correspondence
from postroom.correspondence.render import Renderer
from postroom.errors import TemplateError, TemplateLimitError
from postroom.validation import single_line
from tests.apikit import MINIMAL_RECORDS, http, issue_tokens, mounted, serve

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
HEADROOM_MB = 64
PEAK_LIMIT_KB = 8 * 1024
"""What one rendering may add to the process's peak resident memory."""

_CHILD = r"""
import ctypes, ctypes.util, gc, json, resource, sys, time
from postroom.correspondence.render import Renderer
from postroom.correspondence.models import Correspondence
from postroom.errors import TemplateError, TemplateLimitError

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])  # kB
    raise LookupError(field)

def peak():
    # VmHWM is ru_maxrss without what the pre-exec image (a forked pytest) left in it.
    return status("VmHWM")

payloads = json.load(sys.stdin)
context = {"case": {"data": {"items": [{"name": "a", "price": 1.5}]}}, "party": {}}
renderer = Renderer({"T": Correspondence(name="T", subject="s", html="<p>{{ 1 }}</p>")})
renderer.render_inline(subject="{{ 'warm' ~ 1 }}", body="{{ 'x' * 10 }}", context=context)
limit = (status("VmSize") + int(sys.argv[1]) * 1024) * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
libc = ctypes.CDLL(ctypes.util.find_library("c"))
for source in payloads:
    gc.collect()
    libc.malloc_trim(0)  # what earlier payloads freed goes back: no payload reuses it unseen
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak starts again from what is resident now
    before = peak()
    started = time.monotonic()
    try:
        rendered = renderer.render_inline(subject=source, body="<p>b</p>", context=context)
        outcome = {"rendered": len(rendered.subject)}
    except TemplateError as exc:
        outcome = {"error": type(exc).__name__, "message": str(exc)}
    except MemoryError:
        outcome = {"error": "MemoryError", "message": ""}
    seconds = time.monotonic() - started
    outcome.update(source=source, peak_kb=max(peak() - before, 0), seconds=seconds)
    print(json.dumps(outcome), flush=True)
"""

BIG = "300000000"
# (payload, words the refusal must contain: the limit that was hit)
REFUSED: list[tuple[str, str]] = [
    # '%' formatting: widths and precisions in the format, '*' from the values, keys
    ("{{ '%" + BIG + "d' % 1 }}", "'%' formatting"),
    ("{{ '%." + BIG + "f' % 1 }}", "'%' formatting"),
    ("{{ '%*d' % (" + BIG + ", 1) }}", "'%' formatting"),
    ("{{ '%.*f' % (" + BIG + ", 1.0) }}", "'%' formatting"),
    ("{{ '%(a)" + BIG + "s' % {'a': 1} }}", "'%' formatting"),
    ("{{ '%(a(b))" + BIG + "s' % {'a(b)': 1} }}", "'%' formatting"),
    ("{{ '%r' % ('\\x00' * 900000,) }}", "'%' formatting"),
    ("{{ '%" + BIG + "d'|format(1) }}", "format would build"),
    ("{{ '%" + BIG + "d'.encode() % 1 }}", "'%' formatting"),
    ("{{ '%s'|safe|format('<' * 900000) }}", "format would build"),
    ("{{ ('%s'|safe) % ('<' * 900000) }}", "'%' formatting"),
    ("{{ ('{}'|safe).format('<' * 900000) }}", "str.format"),
    # str.format and format_map: widths, precisions, nested and repeated fields
    ("{{ '{:" + BIG + "}'.format(1) }}", "str.format"),
    ("{{ '{:{w}}'.format(1, w=" + BIG + ") }}", "str.format"),
    ("{{ '{0:{1}}'.format('x', " + BIG + ") }}", "str.format"),
    ("{{ '{:." + BIG + "f}'.format(1.0) }}", "str.format"),
    ("{{ '{:*^" + BIG + "}'.format('x') }}", "str.format"),
    ("{{ '{x:>" + BIG + "}'.format_map({'x': 1}) }}", "str.format"),
    ("{{ ('{0}' * 1000).format('x' * 900000) }}", "str.format"),
    # padding methods and filters
    ("{{ 'x'.center(" + BIG + ") }}", "padding"),
    ("{{ 'x'.ljust(" + BIG + ") }}", "padding"),
    ("{{ 'x'.rjust(" + BIG + ") }}", "padding"),
    ("{{ '1'.zfill(" + BIG + ") }}", "padding"),
    ("{{ 'x\\t'.expandtabs(" + BIG + ") }}", "expandtabs"),
    ("{{ 'x'|center(" + BIG + ") }}", "center"),
    ("{{ ('a\\n' * 100000)|indent(1000) }}", "indent"),
    ("{{ ('a\\n' * 100000)|indent('x' * 1000) }}", "indent"),
    ("{{ ('ab ' * 1000)|wordwrap(1, wrapstring='x' * 10000) }}", "wordwrap"),
    # repetition, sums and joins
    ("{{ 'a' * " + BIG + " }}", "repetition"),
    ("{{ " + BIG + " * 'a' }}", "repetition"),
    ("{{ ['x'] * " + BIG + " }}", "repetition"),
    ("{{ ('x',) * " + BIG + " }}", "repetition"),
    ("{{ ['x' * 100000] * 1000 }}", "repetition"),
    ("{{ 'x' * 999999 ~ 'y' * 999999 }}", "'~' join"),
    ("{{ 'x' * 999999 + 'y' * 999999 }}", "sum of strings"),
    ("{{ range(50000)|map('string')|join('x' * 1000) }}", "join"),
    ("{{ ('x' * 1000).join(range(50000)|map('string')) }}", "join"),
    ("{{ ('a' * 100000)|replace('a', 'x' * 1000) }}", "replace"),
    ("{{ ('a' * 100000).replace('a', 'x' * 1000) }}", "replace"),
    ("{{ ('a' * 1000)|replace('', 'x' * 10000) }}", "replace"),
    ("{{ ('a' * 100000).translate({97: 'x' * 1000}) }}", "translate"),
    # ranges, lists and splits
    ("{{ range(" + BIG + ")|list }}", "a range would take over 100000 steps"),
    ("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "recursion too deep"),
    ("{{ range(100000)|list|length }}", "list would build"),
    ("{{ range(100000)|sort|first }}", "sort would build"),
    ("{{ range(100000)|map('string')|unique|list }}", "unique would build"),
    ("{{ ('x' * 900000)|list|length }}", "list would build"),
    ("{{ ('a ' * 450000).split()|length }}", "split would build"),
    ("{{ ('a\\n' * 450000).splitlines()|length }}", "splitlines would build"),
    ("{{ ('a ' * 450000)|wordcount }}", "wordcount"),
    ("{{ ('a ' * 450000)|striptags }}", "striptags"),
    ("{{ ('a ' * 450000)|title }}", "title"),
    ("{{ ('a.b ' * 50000)|urlize(target='x' * 1000) }}", "urlize"),
    ("{{ [1]|batch(" + BIG + ", 'x') }}", "batch"),
    ("{{ [1]|slice(" + BIG + ") }}", "slice"),
    ("{{ {}.fromkeys(range(100000))|length }}", "fromkeys"),
    # numbers
    ("{{ 10 ** (10 ** 8) }}", "power"),
    ("{{ 2 ** 100000000 }}", "power"),
    ("{{ (10 ** 4000) * (10 ** 4000) }}", "product"),
    ("{{ (1).to_bytes(" + BIG + ", 'big') }}", "to_bytes"),
    # generated text, escaping and serialising
    ("{{ lipsum(" + BIG + ") }}", "lipsum"),
    ("{{ lipsum(5, max=" + BIG + ") }}", "lipsum"),
    ("{{ [[[[1]]]]|tojson(indent=" + BIG + ") }}", "tojson"),
    ("{{ (['x'] * 40000)|tojson(indent=100) }}", "tojson"),
    ("{{ ('<' * 900000)|e }}", "escape"),
    ("{{ ('\\u00e9' * 900000)|urlencode }}", "urlencode"),
    ("{{ {'a': '<' * 900000}|xmlattr }}", "xmlattr"),
    ("{{ ('\\u00e9' * 900000).encode() }}", "string method"),
    # a list that repeats one long string is small until something prints it
    ("{{ ([''] * 50000)|map('default', 'x' * 100000, true)|list }}", "printed value"),
    ("{{ (([''] * 50000)|map('default', 'x' * 100000, true)|list)|string }}", "string"),
    ("{{ 'x' ~ (([''] * 50000)|map('default', 'x' * 100000, true)|list) }}", "'~' join"),
    # doubling across loop steps, macro calls and block sets
    (
        "{% set ns = namespace(s='x' * 1000) %}"
        "{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "'~' join",
    ),
    (
        "{% set ns = namespace(s='x') %}"
        "{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
        "sum of strings",
    ),
    (
        "{% set ns = namespace(l=['x']) %}"
        "{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
        "sum of lists",
    ),
    (
        "{% set ns = namespace(l=[]) %}"
        "{% for i in range(1000) %}{% set ns.l = ns.l + ['x' * 900000] %}{% endfor %}",
        "sum of lists",
    ),
    (
        "{% set a = 'a' * 900000 %}{% set b = 'b' * 900000 %}{% set c = 'c' * 900000 %}"
        "{% set d = 'd' * 900000 %}{% set e = 'e' * 900000 %}{{ (a ~ e)|length }}",
        f"more than {MAX_BUILT_CHARS} characters in all",
    ),
    (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s %}{{ ns.s }}{{ ns.s }}{% endset %}{% endfor %}{{ ns.s|length }}",
        "printed value",
    ),
    (
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}"
        "{% endif %}{% endmacro %}{{ d('x', 40) }}",
        "'~' join",
    ),
    (
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% else %}xxxxxxxxxx"
        "{% endif %}{% endmacro %}{{ m(30) }}",
        "characters in all",
    ),
    ("{% for i in range(20) %}{{ 'x' * 99999 }}{% endfor %}", f"more than {MAX_RENDERED_CHARS}"),
    (
        "{% macro m() %}{% for i in range(100000) %}{% for j in range(19) %}{{ '' }}"
        "{% endfor %}{% endfor %}{% endmacro %}{{ m()|length }}",
        "characters in all",
    ),
    (
        "{% for i in range(100000) %}{% for j in range(19) %}{{ '' }}{% endfor %}{% endfor %}",
        "in all",
    ),
    (
        "{% macro m() %}{% for i in range(100000) %}{% for j in range(19) %}{{ i }}"
        "{% endfor %}{% endfor %}{% endmacro %}{{ m()|length }}",
        "characters in all",
    ),
    # chains of small objects a loop keeps: generators, literals, namespaces
    (
        "{% set ns = namespace(g=[]) %}{% for i in range(100000) %}"
        "{% set ns.g = ns.g|map('string') %}{% endfor %}",
        "characters in all",
    ),
    (
        "{% set ns = namespace(g=[]) %}{% for i in range(100000) %}"
        "{% set ns.g = ns.g|select %}{% endfor %}",
        "characters in all",
    ),
    (
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% for j in range(19) %}"
        "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{% endfor %}",
        "characters in all",
    ),
    (
        "{% set ns = namespace(p=none) %}{% for i in range(100000) %}{% for j in range(19) %}"
        "{% set ns.p = namespace(p=ns.p) %}{% endfor %}{% endfor %}",
        "characters in all",
    ),
    (
        "{% set ns = namespace(p=none) %}{% for i in range(100000) %}{% for j in range(19) %}"
        "{% set ns.p = {'p': ns.p} %}{% endfor %}{% endfor %}",
        "characters in all",
    ),
    # time: loops with no output at all
    (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "loops took more than",
    ),
    (
        "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{% endfor %}{% endfor %}",
        "loops took more than",
    ),
    (
        "{% set big = 'x' * 900000 %}{% for i in range(1000) %}{% for j in range(1000) %}"
        "{% if 'y' in big %}{% endif %}{% endfor %}{% endfor %}",
        f"{RENDER_SECONDS:g} s time limit",
    ),
    (
        "{% for x in [1] * 100 recursive %}{% for y in range(100000) %}{% endfor %}"
        "{{ loop([1] * 100) }}{% endfor %}",
        "loops took more than",
    ),
]

# Sane uses of the same operations still render, and cheaply.
RENDERED: list[tuple[str, str]] = [
    ("{{ '%8.2f'|format(3.14159) }}", "    3.14"),
    ("{{ '%05d|%-4s|%.3s' % (42, 'ab', 'abcdef') }}", "00042|ab  |abc"),
    ("{{ '{:>6}|{:{w}.2f}'.format('ab', 1.5, w=7) }}", "    ab|   1.50"),
    ("{{ 'ab'.center(6, '*') }}|{{ 'x'|center(5) }}|{{ '7'.zfill(3) }}", "**ab**|  x  |007"),
    ("{{ 'ab' * 3 }}{{ [1] * 2 }}{{ 'a' ~ 'b' }}", "ababab[1, 1]ab"),
    ("{{ 'abc'|truncate(" + BIG + ") }}|{{ 'x'|wordwrap(" + BIG + ") }}", "abc|x"),
    ("{{ range(5)|list }}|{{ range(3)|join('-') }}", "[0, 1, 2, 3, 4]|0-1-2"),
    ("{{ 'a b c'.split()|length }}{{ 'a-b'|replace('-', '+') }}", "3a+b"),
    ("{{ 2 ** 10 }} {{ 10 ** 10 ** 8 }}", "1024 1" + "0" * 80),  # Jinja's ** is left-associative
    ("{{ case.data['items']|map(attribute='name')|join }}", "a"),
    ("{{ ('x' * 900000)|length }}", "900000"),
    ("{{ {'a': [1, 2]}|tojson }}", '{"a": [1, 2]}'),
    (
        "{% for k, v in {'a': 1, 'b': 2}|dictsort %}{{ k }}{{ v }}{{ loop.length }}"
        "{% if not loop.last %},{% endif %}{% endfor %}",
        "a12,b22",
    ),
    (
        "{% for x in [3, 1, 2]|sort if x > 1 %}{{ loop.index }}{{ x }}{% else %}-{% endfor %}",
        "1223",
    ),
    ("{% for n in [{'c': [{'c': []}]}] recursive %}[{{ loop(n.c) }}]{% endfor %}", "[[]]"),
    (
        "{% for a, b in [(1, 2)] %}{{ a }}{{ b }}{% endfor %}{% set x, y = 3, 4 %}{{ x }}{{ y }}"
        "{{ (1, 2) }}{{ {1: [1]} }}",
        "1234(1, 2){1: [1]}",
    ),
    # large but legal: near the output limit, a long loop, a big list printed
    ("{{ 'x' * 900000 }}", "x" * 900000),
    ("{% for i in range(50000) %}{{ i % 10 }}{% endfor %}", "0123456789" * 5000),
    ("{% for i in range(100000) %}{{ i }}{% endfor %}", "".join(map(str, range(100000)))),
    ("{{ (range(40000)|list|pprint)|length }}", str(len(pformat(list(range(40000)))))),
]


def _run_child(payloads: list[str]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(HEADROOM_MB)],
        input=json.dumps(payloads),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    outcomes = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    died = f"the child died after {len(outcomes)} of {len(payloads)} payloads: "
    assert done.returncode == 0, died + done.stderr.strip()[-2000:]
    assert len(outcomes) == len(payloads), died + done.stderr.strip()[-2000:]
    return outcomes


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, Any]]:
    """Every payload's outcome from one capped child; the figures are written down."""
    sources = [p for p, _ in REFUSED] + [p for p, _ in RENDERED]
    found = _run_child(sources)
    lines = [
        f"{o['peak_kb']:>7} kB {o['seconds']:6.2f} s  "
        f"{o.get('error', 'rendered'):<20} {o['source'][:90]}"
        for o in found
    ]
    text = (
        f"peak RSS above baseline per payload (address space capped at baseline + "
        f"{HEADROOM_MB} MB), {len(found)} payloads\n" + "\n".join(lines) + "\n"
    )
    print(text)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "template-limits.txt").write_text(text)
    return {o["source"]: o for o in found}


@pytest.mark.parametrize(("source", "limit"), REFUSED)
def test_amplification_is_refused_before_it_allocates(
    outcomes: dict[str, dict[str, Any]], source: str, limit: str
) -> None:
    got = outcomes[source]
    assert got.get("error") == "TemplateLimitError", got
    message = got["message"]
    assert message.startswith("ad-hoc subject: "), message
    # On a loaded machine the time limit may come first: still a limit, and the peak
    # below shows nothing large was built.
    assert limit in message or f"{RENDER_SECONDS:g} s time limit" in message, message
    # Refused by a limit, not rescued from an allocation that had already begun.
    assert "more memory than there is" not in message
    assert got["peak_kb"] < PEAK_LIMIT_KB, got


@pytest.mark.parametrize(("source", "expected"), RENDERED)
def test_sane_uses_render_as_before(
    outcomes: dict[str, dict[str, Any]], source: str, expected: str
) -> None:
    got = outcomes[source]
    assert "error" not in got, got
    assert got["rendered"] == len(single_line(expected))  # a subject is one line
    assert got["peak_kb"] < PEAK_LIMIT_KB, got
    context: dict[str, Any] = {"case": {"data": {"items": [{"name": "a", "price": 1.5}]}}}
    rendered = Renderer({}).render_inline(subject="s", body=source, context=context)
    assert rendered.html == expected


def test_the_child_would_die_without_the_limits() -> None:
    # The cap is real: an allocation past it fails in the child, so a payload that
    # allocated before being refused could not pass the tests above.
    script = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        f"x = bytearray({2 << 30})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    assert "MemoryError" in done.stderr


def test_time_limit_is_a_parameter() -> None:
    renderer = Renderer({}, time_limit=0.2)
    with pytest.raises(
        TemplateLimitError, match=r"ad-hoc body: rendering took longer than the 0\.2 s"
    ):
        renderer.render_inline(
            subject="s",
            body="{% set big = 'x' * 900000 %}{% for i in range(1000) %}"
            "{% for j in range(1000) %}{% if 'y' in big %}{% endif %}{% endfor %}{% endfor %}",
            context={},
        )


def test_a_correspondence_names_itself_in_the_limit_error() -> None:
    renderer = Renderer(
        {"Letter": Correspondence(name="Letter", subject="s", html="{{ 'x'|center(10**9) }}")}
    )
    with pytest.raises(TemplateLimitError) as caught:
        renderer.render("Letter", {})
    assert (
        str(caught.value) == "correspondence 'Letter': center would build over 1000000 characters"
    )
    assert isinstance(caught.value, TemplateError)


def test_output_limit_is_a_limit_error() -> None:
    renderer = Renderer({})
    with pytest.raises(TemplateLimitError, match=f"more than {MAX_RENDERED_CHARS} characters"):
        renderer.render_inline(
            subject="s", body="{% for i in range(200) %}{{ 'x' * 9999 }}{% endfor %}", context={}
        )


def test_api_answers_422_naming_the_ad_hoc_subject(sqlite_postroom: Postroom) -> None:
    sqlite_postroom.apply(MINIMAL_RECORDS)
    tokens = issue_tokens(sqlite_postroom)
    with serve(mounted(sqlite_postroom)) as base, http(base) as c:
        answer = c.post(
            "/api/v1/emails",
            json={
                "to": ["b@example.com"],
                "class_name": "A-B-C",
                "subject": "{{ '%" + BIG + "d' % 1 }}",
                "body": "<p>b</p>",
                "template": True,
            },
            headers=tokens.send,
        )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    detail = problem["detail"]
    assert "ad-hoc subject: " in detail, detail
    assert "'%' formatting would build over" in detail
    assert [e["field"] for e in problem["errors"]] == ["body.subject"]
    assert sqlite_postroom.outbox() == []


def test_fragments_that_each_include_the_next_twice_meet_a_limit() -> None:
    # Each level doubles the work and prints nothing: 30 levels would take hours.
    # (Imports need no such test: Jinja keeps a template imported without context.)
    use = '{% include "F{n}" %}{% include "F{n}" %}'
    records = {"T": Correspondence(name="T", subject="s", html='{% include "F0" %}')}
    for i in range(30):
        records[f"F{i}"] = Correspondence(name=f"F{i}", html=use.replace("{n}", str(i + 1)))
    records["F30"] = Correspondence(name="F30", html="{# nothing #}")
    renderer = Renderer(records)
    renderer.check()
    with pytest.raises(TemplateLimitError, match="correspondence 'T'"):
        renderer.render("T", {})


def test_a_letter_may_include_a_fragment_for_each_of_many_rows() -> None:
    records = {
        "T": Correspondence(
            name="T", subject="s", html='{% for i in range(500) %}{% include "F" %}{% endfor %}'
        ),
        "F": Correspondence(name="F", html="<p>row</p>"),
    }
    assert Renderer(records).render("T", {}).html.count("<p>row</p>") == 500

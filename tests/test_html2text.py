"""The fast scan of letters gives exactly the text the standard library's parser gives."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from postroom.correspondence.html2text import html_to_text

TAGS = ["p", "div", "br", "li", "ul", "tr", "td", "th", "table", "a", "b", "strong", "h1", "span"]
TAGS += ["title"]  # text the parser leaves out
words = st.text(alphabet="ab cé€&;#<>\"'\n\t=x1\xa0", max_size=12)


@st.composite
def documents(draw: st.DrawFn) -> str:
    pieces = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["open", "close", "text", "entity", "link", "self"]))
        tag = draw(st.sampled_from(TAGS))
        if kind == "open":
            pieces.append(f'<{tag} style="color: #222;" class=x>')
        elif kind == "close":
            pieces.append(f"</{tag}>")
        elif kind == "self":
            pieces.append(f"<{tag}/>")
        elif kind == "entity":
            pieces.append(draw(st.sampled_from(["&amp;", "&lt;", "&eacute;", "&#8364;", "&nbsp;"])))
        elif kind == "link":
            href = draw(st.sampled_from(["https://x.example/?a=1&amp;b=2", "#top", "mailto:a@b.c"]))
            quote = draw(st.sampled_from(['"', "'"]))
            pieces.append(f"<a href={quote}{href}{quote}>{draw(words)}</a>")
        else:
            pieces.append(draw(words))
    return "".join(pieces)


@settings(max_examples=500, deadline=None, database=None)
@given(documents())
@example("<p>Dear <b>Carol</b>,</p><ul><li>one</li><li>two &amp; three</li></ul><br>")
@example("<p>a < b</p>")
@example('<script>var x = "<p>";</script><p>shown</p>')
@example("<!-- hidden --><p>text</p>")
@example('<a href="https://x.example">site</a> <a href="#top">top</a>')
@example("&amp<b>x;</b> &lt<br/>p&gt; a <span> </span> b")
@example('<a href="https://x.example">in <a/> out</a><p/><li/>')
@example("<head><title>T</title></head><p>body</p>")
@example("<title/><p>shown</p>")
def test_the_scan_matches_the_parser(document: str) -> None:
    assert html_to_text(document) == html_to_text(document, scan=False)


def test_a_letter_reads_as_text() -> None:
    letter = (
        "<p>Dear <strong>Zoë</strong>,</p><table><tr><td>Amount</td><td>250 000 €</td></tr>"
        '</table><p>See <a href="https://bank.example/r?id=1&amp;x=2">your request</a>.</p>'
    )
    assert html_to_text(letter) == (
        "Dear Zoë,\n\nAmount\t250 000 €\n\nSee your request <https://bank.example/r?id=1&x=2>.\n"
    )

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


BLOCKS = ["p", "div", "section", "blockquote", "h2", "pre", "header"]
INLINE = ["b", "strong", "em", "span", "i"]
spaces = st.sampled_from(["", " ", "\n", "  \n\t ", "\xa0", "\r\n"])
phrases = st.text(alphabet="Dear cliënt 0123 €,.:;-()'\"", min_size=1, max_size=15)
entities = st.sampled_from(
    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&eacute;", "&nbsp;", "&euro;"]
)
links = st.sampled_from(
    ["https://bank.example/r?id=1&amp;x=2", "mailto:notices@example.com", "#top", "javascript:go()"]
)


def _inline(draw: st.DrawFn, depth: int) -> str:
    kind = draw(st.sampled_from(["text", "entity", "tag", "link", "br"] if depth < 3 else ["text"]))
    if kind == "entity":
        return draw(entities)
    if kind == "br":
        return draw(st.sampled_from(["<br>", "<br/>", "<br />"]))
    if kind == "tag":
        tag = draw(st.sampled_from(INLINE))
        inner = "".join(_inline(draw, depth + 1) for _ in range(draw(st.integers(0, 3))))
        return f'<{tag} style="color: #{draw(st.integers(0, 999)):03d};">{inner}</{tag}>'
    if kind == "link":
        quote = draw(st.sampled_from(['"', "'"]))
        inner = "".join(_inline(draw, depth + 1) for _ in range(draw(st.integers(0, 2))))
        return f"<a href={quote}{draw(links)}{quote} target=_blank>{inner}</a>"
    return draw(spaces) + draw(phrases) + draw(spaces)


def _block(draw: st.DrawFn, depth: int) -> str:
    kind = draw(st.sampled_from(["block", "list", "table", "inline"] if depth < 3 else ["inline"]))
    gap = draw(spaces)
    if kind == "list":
        tag = draw(st.sampled_from(["ul", "ol"]))
        items = "".join(
            f"{gap}<li>{_block(draw, depth + 1)}</li>" for _ in range(draw(st.integers(0, 3)))
        )
        return f"<{tag}>{items}{gap}</{tag}>"
    if kind == "table":
        rows = []
        for _ in range(draw(st.integers(0, 3))):
            cell = draw(st.sampled_from(["td", "th"]))
            cells = "".join(
                f"<{cell} style='padding: 4px'>{_inline(draw, depth + 1)}</{cell}>{gap}"
                for _ in range(draw(st.integers(1, 3)))
            )
            rows.append(f"<tr>{gap}{cells}</tr>")
        return f'<table style="border-collapse: collapse;">{gap}{"".join(rows)}</table>'
    if kind == "block":
        tag = draw(st.sampled_from(BLOCKS))
        inner = "".join(_block(draw, depth + 1) for _ in range(draw(st.integers(0, 3))))
        return f"<{tag}>{inner}</{tag}>{gap}"
    return "".join(_inline(draw, depth) for _ in range(draw(st.integers(1, 4))))


@st.composite
def letters(draw: st.DrawFn) -> str:
    """Well-nested HTML of the shapes letters have: blocks, lists, tables, links, entities."""
    head = draw(st.sampled_from(["", "<head><title>Notice</title></head>"]))
    return head + "".join(_block(draw, 0) for _ in range(draw(st.integers(1, 5))))


@settings(max_examples=400, deadline=None, database=None)
@given(letters())
def test_letters_read_as_the_parser_reads_them(letter: str) -> None:
    assert html_to_text(letter) == html_to_text(letter, scan=False)

"""A small, safe Markdown renderer for model cards: headings, paragraphs, lists, tables, fenced
code, inline code, bold and italics. Every piece of text is HTML-escaped first, so a card cannot
inject markup; links and images are not rendered (a card's URLs stay plain text)."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def inline(text: str) -> str:
    """Escaped ``text`` with code spans, bold and italics as HTML."""
    pieces = _CODE.split(text)  # odd pieces are code: no emphasis inside
    out = []
    for index, piece in enumerate(pieces):
        piece = str(escape(piece))
        if index % 2:
            out.append(f"<code>{piece}</code>")
        else:
            piece = _BOLD.sub(r"<strong>\1</strong>", piece)
            out.append(_ITALIC.sub(r"<em>\1</em>", piece))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    head, body = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    rows = ["<tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"]
    rows += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in body]
    return '<div class="scroll"><table>' + "".join(rows) + "</table></div>"


def render(text: str) -> Markup:
    """The HTML of Markdown ``text`` (the subset above; anything else becomes a paragraph)."""
    lines, out, index = text.splitlines(), [], 0
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            flush()
            end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")),
                       len(lines))  # fmt: skip
            out.append(f"<pre><code>{escape(chr(10).join(lines[index + 1 : end]))}</code></pre>")
            index = end + 1
            continue
        if (
            line.lstrip().startswith("|")
            and index + 1 < len(lines)
            and _RULE.match(lines[index + 1])
        ):
            flush()
            end = index + 2
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            out.append(_table(lines[index:end]))
            index = end
            continue
        heading, item = _HEADING.match(line), _ITEM.match(line)
        if heading:
            flush()
            level = min(len(heading.group(1)) + 1, 6)  # the page has its own h1
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif item:
            flush()
            items = []
            while index < len(lines) and (match := _ITEM.match(lines[index])):
                items.append(f"<li>{inline(match.group(1))}</li>")
                index += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.strip())
        index += 1
    flush()
    return Markup("\n".join(out))

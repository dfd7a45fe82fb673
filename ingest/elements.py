"""Parser output to domain Elements: heading paths, whole tables with captions, clean text.

Pure functions over `Block`s (a parser-neutral record), so they are tested without any parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import html as lxml_html

from core.models import Element

DROPPED_CATEGORIES = frozenset({"PageBreak", "Header", "Footer", "PageNumber", "Image"})
CAPTION_CATEGORIES = frozenset({"Title", "FigureCaption", "UncategorizedText", "NarrativeText"})
MAX_CAPTION_CHARS = 160
MAX_HEADING_CHARS = 160
MAX_SECTION_DEPTH = 8
_TABLE_LABEL_RE = re.compile(r"^\s*(table|tab\.|tabelle|tableau|tabla)\s*[\dIVXivx]", re.IGNORECASE)
_FILENAME_RE = re.compile(
    r"\.(docx?|pptx?|xlsx?|pdf|indd|tmp|qxd|rtf|odt|txt|html?|jpe?g|png|tiff?|bmp|gif)$",
    re.IGNORECASE,
)
_APP_PREFIX_RE = re.compile(
    r"^(microsoft (word|powerpoint|excel)|powerpoint presentation)\s*-\s*", re.IGNORECASE
)
_PLACEHOLDER_TITLES = frozenset(
    {
        "untitled",
        "title",
        "no title",
        "document",
        "presentation",
        "powerpoint presentation",
        "slide 1",
    }
)
_SPACES_RE = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES_RE = re.compile(r"\n\s*\n\s*\n+")


@dataclass(frozen=True)
class Block:
    """One piece of parser output before structure is resolved.

    depth: heading level of a Title (0 = top) when the format knows it.
    html: a table's structure (text_as_html) when the parser kept it.
    """

    text: str
    category: str = "NarrativeText"
    page: int | None = None
    depth: int | None = None
    html: str | None = None
    block_id: str | None = None
    parent_id: str | None = None


def clean_text(text: str, *, keep_lines: bool = False) -> str:
    """Normalise whitespace: odd spaces to one space, at most one blank line, trimmed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [_SPACES_RE.sub(" ", line).strip() for line in text.split("\n")]
    if not keep_lines:
        return " ".join(line for line in lines if line)
    return _BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()


def build_elements(blocks: Iterable[Block], *, root: Sequence[str] = ()) -> list[Element]:
    """Elements in reading order, each carrying the heading path it sits under.

    A Title's own section_path ends with itself. Tables become one element whose text is their
    caption (when one precedes them) followed by the table as pipe-separated rows.
    """
    headings = _HeadingStack(tuple(root))
    out: list[Element] = []
    for block in blocks:
        if block.category in DROPPED_CATEGORIES:
            continue
        if block.category == "Table":
            _append_table(out, block, headings.path)
            continue
        text = clean_text(block.text, keep_lines=block.category in {"CodeSnippet", "Formula"})
        if not text:
            continue
        if block.category == "Title":
            headings.push(text[:MAX_HEADING_CHARS], block)
        out.append(
            Element(text=text, category=block.category, page=block.page, section_path=headings.path)
        )
    return out


class _HeadingStack:
    """The open headings; a new heading closes every open one at its level or deeper."""

    def __init__(self, root: tuple[str, ...]) -> None:
        self._root = root
        self._stack: list[tuple[int, str, str | None]] = []

    @property
    def path(self) -> tuple[str, ...]:
        return self._root + tuple(text for _, text, _ in self._stack)

    def push(self, text: str, block: Block) -> None:
        depth = self._depth_of(block)
        while self._stack and self._stack[-1][0] >= depth:
            self._stack.pop()
        if len(self._stack) < MAX_SECTION_DEPTH:
            self._stack.append((depth, text, block.block_id))

    def _depth_of(self, block: Block) -> int:
        if block.depth is not None:
            return block.depth
        # No level from the format: a heading whose parent is an open heading nests under it.
        for depth, _, block_id in reversed(self._stack):
            if block_id is not None and block_id == block.parent_id:
                return depth + 1
        return 0


def _append_table(out: list[Element], block: Block, path: tuple[str, ...]) -> None:
    body = html_table_to_rows(block.html) if block.html else ""
    body = body or clean_text(block.text, keep_lines=True)
    if not body:
        return
    caption = _take_caption(out, block)
    text = f"{caption}\n\n{body}" if caption else body
    out.append(
        Element(text=text, category="Table", page=block.page, section_path=path, is_table=True)
    )


def _take_caption(out: list[Element], table: Block) -> str | None:
    """The element just before a table when it reads like its caption; non-heading captions
    are moved into the table (a heading stays, it also names the section)."""
    if not out:
        return None
    prev = out[-1]
    if (
        prev.is_table
        or prev.category not in CAPTION_CATEGORIES
        or len(prev.text) > MAX_CAPTION_CHARS
    ):
        return None
    if table.page is not None and prev.page is not None and prev.page != table.page:
        return None
    labelled = bool(_TABLE_LABEL_RE.match(prev.text))
    if prev.category == "NarrativeText" and not labelled:
        return None
    if prev.category != "Title":
        out.pop()
    return prev.text


def merge_adjacent_tables(blocks: Sequence[Block]) -> list[Block]:
    """Join tables that follow each other on the same page into one (a spreadsheet's header
    rows and body rows often come out as separate sub-tables)."""
    out: list[Block] = []
    for block in blocks:
        prev = out[-1] if out else None
        if prev and block.category == prev.category == "Table" and block.page == prev.page:
            html = _join_tables(prev.html or "", block.html or "")
            text = f"{prev.text}\n{block.text}"
            out[-1] = Block(text=text, category="Table", page=prev.page, html=html or None)
        else:
            out.append(block)
    return out


def _join_tables(first: str, second: str) -> str:
    rows: list[str] = []
    for table_html in (first, second):
        try:
            root = lxml_html.fragment_fromstring(table_html, create_parent="div")
        except (ValueError, lxml_html.etree.ParserError):
            return ""
        trs = root.xpath(".//tr[count(ancestor::table) <= 1]")
        rows.extend(lxml_html.tostring(tr, encoding="unicode") for tr in trs)
    return f"<table>{''.join(rows)}</table>"


def html_table_to_rows(table_html: str) -> str:
    """A table as pipe-separated rows: the first row is the header, a separator follows it.

    Column spans repeat the cell's text; empty rows and columns are dropped.
    """
    rows = _table_cells(table_html)
    rows = [row for row in rows if any(row)]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    grid = [row + [""] * (width - len(row)) for row in rows]
    keep = [c for c in range(width) if any(row[c] for row in grid)]
    grid = [[row[c] for c in keep] for row in grid]
    lines = [_pipe_row(grid[0]), _pipe_row(["---"] * len(keep))]
    lines.extend(_pipe_row(row) for row in grid[1:])
    return "\n".join(lines)


def _table_cells(table_html: str) -> list[list[str]]:
    """Cell texts row by row, with row and column spans filled in (outermost table only)."""
    try:
        root = lxml_html.fragment_fromstring(table_html, create_parent="div")
    except (ValueError, lxml_html.etree.ParserError):
        return []
    carried: dict[int, tuple[str, int]] = {}  # column -> (text, rows still covered)
    rows: list[list[str]] = []
    for tr in root.xpath(".//tr[count(ancestor::table) <= 1]"):
        cells = [
            (_cell_text(c), _int_attr(c.get("colspan")), _int_attr(c.get("rowspan")))
            for c in tr
            if c.tag in ("td", "th")
        ]
        rows.append(_place_row(cells, carried))
    return rows


def _place_row(cells: list[tuple[str, int, int]], carried: dict[int, tuple[str, int]]) -> list[str]:
    row: list[str] = []
    pending = iter(cells)
    while True:
        col = len(row)
        if col in carried:
            text, left = carried.pop(col)
            if left > 1:
                carried[col] = (text, left - 1)
            row.append(text)
            continue
        cell = next(pending, None)
        if cell is None:
            if any(c > col for c in carried):
                row.append("")
                continue
            return row
        text, colspan, rowspan = cell
        for offset in range(colspan):
            if rowspan > 1:
                carried[col + offset] = (text, rowspan - 1)
            row.append(text)


def _cell_text(cell: Any) -> str:
    # pandas writes a line break inside a spreadsheet cell as a literal backslash-n
    text = " ".join(cell.itertext()).replace("\\n", " ")
    return clean_text(text).replace("|", "\\|")


def _int_attr(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 100))
    except ValueError:
        return 1


def _pipe_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def first_title(elements: Sequence[Element]) -> str | None:
    """The text of the first heading, if any."""
    return next((e.text for e in elements if e.category == "Title"), None)


def clean_metadata_title(value: str | None) -> str | None:
    """A title from file metadata, or None when it is empty, a placeholder or a file name."""
    title = clean_text(_APP_PREFIX_RE.sub("", value or ""))
    if not title or title.lower() in _PLACEHOLDER_TITLES or _FILENAME_RE.search(title):
        return None
    return title[:MAX_HEADING_CHARS]

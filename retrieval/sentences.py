"""Sentences of a chunk -- the units the extractive answerer quotes -- and their stored vectors.

`split_sentences` is the one definition of "a sentence" that ingestion (which pools one
vector per sentence span from the forward pass that embeds the chunk) and the answerer (which
quotes them) share. Prose is cut by BlingFire's sentence breaker (a compiled finite-state
model: abbreviations, initials, decimals and quotes stay inside their sentence; ~0.5 ms per
200-token chunk, against ~5 ms for pySBD and ~2.4 ms for spaCy's senter, so ingestion, which
runs at ~26 ms per chunk bound by the model, does not notice it). Then what a reader would not
take for a sentence is folded away: a list enumerator ("a.", "2)", "●") joins the item it
opens (and is not quoted), units under four words join a neighbour, and Markdown table rows
(as ingestion stores tables) become row statements ("Team: Maple Leafs, Titles: 13"); header
and separator rows are never quoted.

Stored form: ``s2:`` then int8 rows (unit vector x 127), base64, one row per sentence; an
all-zero row marks a sentence the model did not see (past its window). Rows written before
this segmenter (no prefix) were pooled over the old regular-expression spans: they are still
used for every sentence whose span is unchanged (`legacy_sentence_spans`), and the answerer
embeds the others itself.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import blingfire
import numpy as np
import numpy.typing as npt

Span = tuple[int, int]

MIN_WORDS = 4
"""A unit with fewer words is not quoted on its own: it is merged into a neighbour."""
VECTORS_VERSION = "s2"

_SCALE = 127.0
_LEGACY_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_MARK = r"(?:\(?(?:\d{1,3}|[A-Za-z]|[ivxIVX]{2,5})[.)]|[•●▪◦‣∙·*\u2013-])"
ENUMERATOR = re.compile(rf"^\s*{_MARK}(?:\s+|$)")
"""A list enumerator or bullet at the start of a unit ("a. ", "(2) ", "iv) ", "● ")."""
_ITEM_START = re.compile(r"(?<=[.!?:;] )\(?(?:\d{1,3}|[a-z])[.)] +(?=[A-Z])")
_INITIALS = re.compile(r"^\s*[A-Z]\.\s+[A-Z]\.")
_ONLY_MARK = re.compile(rf"^\s*{_MARK}\s*$")
_TRAILING_MARK = re.compile(r"(?<=\s)\(?(\d{1,3}|[A-Za-z])[.)]$")
_SEPARATOR_CELL = re.compile(r"^:?-{3,}:?$")
_TERMINAL = (".", "!", "?", '."', ".'", ".)", "!)", "?)", '?"', '!"')


@dataclass(frozen=True)
class Sentence:
    """A quotable unit: its character span in the text and the words a reader sees."""

    start: int
    end: int
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


def split_sentences(text: str) -> list[Sentence]:
    """The quotable units of `text`, in order: prose sentences and table row statements."""
    out: list[Sentence] = []
    for start, end, is_table in _blocks(text):
        if is_table:
            out.extend(_table_rows(text, start, end))
        else:
            out.extend(_prose(text, start, end))
    return out


def sentence_spans(text: str) -> list[Span]:
    """(start, end) character offsets of each unit of `split_sentences`."""
    return [(s.start, s.end) for s in split_sentences(text)]


def content_spans(embed_text: str, content: str) -> list[Span]:
    """The sentence spans of `content`, as offsets into `embed_text` (which ends with it)."""
    if not embed_text.endswith(content):
        return []
    offset = len(embed_text) - len(content)
    return [(offset + start, offset + end) for start, end in sentence_spans(content)]


def legacy_sentence_spans(text: str) -> list[Span]:
    """The spans vectors were pooled over before `split_sentences` (one regular expression)."""
    spans: list[Span] = []
    start = 0
    for match in _LEGACY_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


# --- blocks: paragraphs and tables ---------------------------------------------------------


def _blocks(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_table) runs of lines: tables, and prose cut at blank lines."""
    blocks: list[tuple[int, int, bool]] = []
    position = 0
    for line in text.splitlines(keepends=True):
        start, position = position, position + len(line)
        table = _is_table_row(line)
        if blocks and blocks[-1][2] == table and not (not table and not line.strip()):
            blocks[-1] = (blocks[-1][0], position, table)
        elif line.strip():
            blocks.append((start, position, table))
    return [(s, e, t) for s, e, t in blocks if text[s:e].strip()]


def _is_table_row(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("|") and stripped.count("|") >= 2


# --- prose ---------------------------------------------------------------------------------


def _prose(text: str, start: int, end: int) -> list[Sentence]:
    block = text[start:end]
    units: list[Span] = []
    for paragraph_start, paragraph_end in _paragraphs(block):
        piece = block[paragraph_start:paragraph_end]
        _, offsets = blingfire.text_to_sentences_and_offsets(piece)
        spans = [(start + paragraph_start + a, start + paragraph_start + b) for a, b in offsets]
        units.extend(_folded(text, spans))
    return [_sentence(text, s, e) for s, e in units]


def _paragraphs(block: str) -> list[Span]:
    spans, position = [], 0
    for match in _BLANK_LINE.finditer(block):
        spans.append((position, match.start()))
        position = match.end()
    spans.append((position, len(block)))
    return [(s, e) for s, e in spans if block[s:e].strip()]


def _folded(text: str, spans: list[Span]) -> list[Span]:
    """Enumerators moved to the item they open, then short units merged into neighbours."""
    spans = _moved_trailing_marks(text, _marks_joined(text, _item_starts_split(text, spans)))
    merged: list[Span] = []
    carry: int | None = None  # start of units waiting to join the next one
    for s, e in spans:
        s = s if carry is None else carry
        carry = None
        unit = text[s:e]
        if _words(unit) < MIN_WORDS and not _terminal(unit):
            carry = s
        elif _words(unit) < MIN_WORDS and merged:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    if carry is not None:
        if merged:
            merged[-1] = (merged[-1][0], spans[-1][1])
        else:
            merged.append((carry, spans[-1][1]))
    return merged


def _item_starts_split(text: str, spans: list[Span]) -> list[Span]:
    """Cut where a list item starts inside a unit ("... now. a. Hotels ..."): the breaker
    keeps "now. a." together when a lower-case enumerator follows a sentence end."""
    out: list[Span] = []
    for s, e in spans:
        cuts = [s + m.start() for m in _ITEM_START.finditer(text, s, e)]
        for a, b in zip([s, *cuts], [*cuts, e], strict=True):
            out.append((a, b))
    return out


def _marks_joined(text: str, spans: list[Span]) -> list[Span]:
    """A unit that is only an enumerator ("a.", "2)", "●") joins the item after it."""
    out: list[Span] = []
    carry: int | None = None
    for s, e in spans:
        if _ONLY_MARK.match(text[s:e]):
            carry = s if carry is None else carry
            continue
        out.append((s if carry is None else carry, e))
        carry = None
    if carry is not None:
        out.append((carry, spans[-1][1]))
    return out


def _moved_trailing_marks(text: str, spans: list[Span]) -> list[Span]:
    """A unit ending in the next item's enumerator (": a." / "usage 3.") gives it away."""
    out = list(spans)
    for i in range(len(out) - 1):
        s, e = out[i]
        match = _TRAILING_MARK.search(text[s:e])
        if match and _opens_item(text[s:e], match):
            cut = s + match.start()
            out[i] = (s, cut)
            out[i + 1] = (cut, out[i + 1][1])
    return [(s, e) for s, e in out if text[s:e].strip()]


def _opens_item(unit: str, mark: re.Match[str]) -> bool:
    """After a colon, or the successor of the enumerator the unit itself starts with."""
    before = unit[: mark.start()].rstrip()
    if before.endswith((":", ";")):
        return True
    first = ENUMERATOR.match(unit)
    label = first.group(0).strip(" ().") if first else ""
    current = mark.group(1)
    if label.isdigit() and current.isdigit():
        return int(current) == int(label) + 1
    return len(label) == 1 and len(current) == 1 and ord(current) == ord(label) + 1


def _sentence(text: str, start: int, end: int) -> Sentence:
    return Sentence(start, end, " ".join(without_marks(text[start:end]).split()))


def without_marks(unit: str) -> str:
    """The unit without the enumerators or bullets that open it ("17. (a) If ..." -> "If ...").

    An upper-case letter followed by another initial is a name ("W. H. Bulpett"), not a mark.
    """
    while (mark := ENUMERATOR.match(unit)) and _words(unit[mark.end() :]):
        if _INITIALS.match(unit):
            break
        unit = unit[mark.end() :]
    return unit


def _words(text: str) -> int:
    return len(text.split())


def _terminal(unit: str) -> bool:
    return unit.rstrip().endswith(_TERMINAL)


# --- tables --------------------------------------------------------------------------------


def _table_rows(text: str, start: int, end: int) -> list[Sentence]:
    """One statement per body row, labelled by the header ("Team: Maple Leafs, Titles: 13")."""
    lines: list[tuple[int, int, str]] = []
    position = start
    for line in text[start:end].splitlines(keepends=True):
        lines.append((position, position + len(line.rstrip()), line))
        position += len(line)
    separator = next((i for i, line in enumerate(lines) if _is_separator(line[2])), None)
    header: list[str] = []
    body = [(s, e, _cells(line)) for s, e, line in lines if not _is_separator(line)]
    if separator:
        header = _cells(lines[separator - 1][2])
        body = [(s, e, _cells(line)) for s, e, line in lines[separator + 1 :]]
        if not all(header) and body and all(body[0][2]) and not any(map(_numeric, body[0][2])):
            header, body = body[0][2], body[1:]  # a title row above the real header
    rows = [Sentence(s, e, _statement(header, cells)) for s, e, cells in body if any(cells)]
    return [row for row in rows if row.words >= MIN_WORDS]


def _cells(line: str) -> list[str]:
    """A row's cell texts: bullets and enumerators dropped, a cell of dashes left empty."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    cells = [" ".join(cell.split()) for cell in inner.split("|")]
    cells = [without_marks(cell) for cell in cells]
    return ["" if _SEPARATOR_CELL.match(cell) else cell for cell in cells]


def _is_separator(line: str) -> bool:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return all(_SEPARATOR_CELL.match(c) for c in cells if c) and any(cells)


def _numeric(cell: str) -> bool:
    return bool(re.fullmatch(r"[-+$€£%()\d.,\s]+", cell))


def _statement(header: list[str], cells: list[str]) -> str:
    parts = []
    for k, value in enumerate(cells):
        label = header[k] if k < len(header) else ""
        if value:
            parts.append(f"{label}: {value}" if label and label != value else value)
    return ", ".join(parts) + "."


# --- stored vectors ------------------------------------------------------------------------


def encode_sentence_vectors(vectors: npt.NDArray[np.float32]) -> str:
    """int8 rows, base64, behind the version tag: ~1/5 of float32 JSON, cosine error < 0.01."""
    quantised = np.clip(np.rint(vectors * _SCALE), -127, 127).astype(np.int8)
    return f"{VECTORS_VERSION}:" + base64.b64encode(quantised.tobytes()).decode("ascii")


def decode_sentence_vectors(data: str, dimension: int) -> npt.NDArray[np.float32]:
    """Rows back as float32 (unit length up to quantisation; zero rows stay zero)."""
    raw = np.frombuffer(base64.b64decode(data.rpartition(":")[2]), dtype=np.int8)
    if raw.size % dimension:
        return np.zeros((0, dimension), dtype=np.float32)
    return raw.reshape(-1, dimension).astype(np.float32) / _SCALE


def is_legacy(data: str) -> bool:
    """Whether stored rows were pooled over `legacy_sentence_spans` (written before s2)."""
    return not data.startswith(f"{VECTORS_VERSION}:")

"""The `filter` parameter: a small OData subset (as Azure AI Search takes) or a JSON object.

OData form, clauses joined with ``and`` (case-insensitive keywords)::

    field eq 'text'                 string ('' escapes a quote), integer, true or false
    search.in(field, 'a,b,c')       any of the listed values (optional third arg: delimiter)
    acl_groups/any(g: search.in(g, 'hr,finance'))   security trimming by group
    acl_groups/any(g: g eq 'hr')

``group_ids`` (OYD's field for security trimming) is an alias of ``acl_groups``. A field path
``metadata/lang`` is sent to the index as ``metadata.lang``.

JSON form: ``{"field": "value", "other": ["a", "b"], "acl_groups": ["hr"]}`` -- a value
list means "any of".

Anything else (``or``, ``ne``, ranges, a field twice) is rejected with a 400 that says why.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import NoReturn

from core.errors import InvalidFilterError
from retrieval.index import MetadataFilter

ACL_FIELDS = frozenset({"acl_groups", "group_ids"})
INT64 = range(-(2**63), 2**63)  # the index stores 64-bit integers
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+)(?![\w.])"
    r"|(?P<ident>[A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)|(?P<punct>[(),:]))"
)

Value = str | int | bool | list[str] | list[int]


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def parse_filter(text: str | None, *, param: str = "filter") -> MetadataFilter | None:
    """Parse a filter string (OData subset or JSON object); None or blank means no filter."""
    if text is None or not text.strip():
        return None
    if text.lstrip().startswith("{"):
        return _from_json(text, param=param)
    return _Parser(_tokenize(text, param=param), param=param).parse()


def _tokenize(text: str, *, param: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            where = text[pos : pos + 20]
            raise InvalidFilterError(f"filter: unexpected text at {pos}: {where!r}", param=param)
        kind = match.lastgroup or ""
        tokens.append(_Tok(kind, match.group(kind)))
        pos = match.end()
    return tokens


def _from_json(text: str, *, param: str) -> MetadataFilter:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFilterError(f"filter: invalid JSON ({exc.msg})", param=param) from exc
    if not isinstance(data, dict) or not data:
        raise InvalidFilterError("filter: a JSON filter must be a non-empty object", param=param)
    equals: dict[str, Value] = {}
    acl: tuple[str, ...] | None = None
    for key, value in data.items():
        if key in ACL_FIELDS:
            acl = _json_acl(value, param=param)
        else:
            equals[_field(key, param=param)] = _json_value(key, value, param=param)
    return MetadataFilter(equals=equals, acl_groups=acl)


def _json_acl(value: object, *, param: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidFilterError(
        "filter: acl_groups must be a string or a list of strings", param=param
    )


def _json_value(key: str, value: object, *, param: str) -> Value:
    if isinstance(value, str | bool) or (isinstance(value, int) and value in INT64):
        return value
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        if all(isinstance(v, int) and not isinstance(v, bool) and v in INT64 for v in value):
            return [int(v) for v in value]
    raise InvalidFilterError(
        f"filter: value of {key!r} must be a string, a 64-bit integer, a boolean or a non-empty "
        "list of strings or of integers",
        param=param,
    )


def _field(name: str, *, param: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][\w]*(?:[./][A-Za-z_][\w]*)*", name):
        raise InvalidFilterError(f"filter: {name!r} is not a field name", param=param)
    return name.replace("/", ".")


class _Parser:
    """Recursive descent over the tokens: clause (and clause)*."""

    def __init__(self, tokens: list[_Tok], *, param: str) -> None:
        self._tokens = tokens
        self._pos = 0
        self._param = param
        self._equals: dict[str, Value] = {}
        self._acl: tuple[str, ...] | None = None

    def parse(self) -> MetadataFilter:
        self._clause()
        while self._peek_word("and"):
            self._pos += 1
            self._clause()
        if self._pos < len(self._tokens):
            self._fail(f"unexpected {self._tokens[self._pos].text!r} (only 'and' joins clauses)")
        return MetadataFilter(equals=self._equals, acl_groups=self._acl)

    def _clause(self) -> None:
        head = self._expect("ident")
        if head.lower() == "search.in":
            field, values = self._search_in()
            self._put(field, values)
        elif "/" in head and head.rsplit("/", 1)[1].lower() == "any":
            self._acl_any(head.rsplit("/", 1)[0])
        else:
            self._expect_word("eq")
            self._put(head, self._literal())

    def _search_in(self) -> tuple[str, list[str]]:
        self._expect_punct("(")
        field = self._expect("ident")
        self._expect_punct(",")
        raw = self._string()
        delimiters = " ,"
        if self._peek_punct(","):
            self._pos += 1
            delimiters = self._string()
        self._expect_punct(")")
        values = [v for v in re.split("|".join(map(re.escape, delimiters)), raw) if v]
        if not values:
            self._fail("search.in needs at least one value")
        return field, values

    def _acl_any(self, field: str) -> None:
        if field not in ACL_FIELDS:
            self._fail(f"'/any' is only supported on acl_groups (or group_ids), not {field!r}")
        self._expect_punct("(")
        var = self._expect("ident")
        self._expect_punct(":")
        if self._peek_word("search.in"):
            self._pos += 1
            inner, values = self._search_in()
        else:
            inner = self._expect("ident")
            self._expect_word("eq")
            values = [self._string()]
        self._expect_punct(")")
        if inner != var:
            self._fail(f"'{var}' is the lambda variable, but the condition tests {inner!r}")
        self._set_acl(tuple(values))

    def _set_acl(self, groups: tuple[str, ...]) -> None:
        if self._acl is not None:
            self._fail("acl_groups appears twice")
        self._acl = groups

    def _put(self, field: str, value: Value) -> None:
        if field in ACL_FIELDS:
            groups = value if isinstance(value, list) else [str(value)]
            self._set_acl(tuple(str(g) for g in groups))
            return
        key = _field(field, param=self._param)
        if key in self._equals:
            self._fail(f"field {field!r} appears twice")
        self._equals[key] = value

    def _literal(self) -> str | int | bool:
        tok = self._next()
        if tok.kind == "string":
            return tok.text[1:-1].replace("''", "'")
        if tok.kind == "number":
            if int(tok.text) not in INT64:
                self._fail(f"{tok.text} does not fit a 64-bit integer")
            return int(tok.text)
        if tok.kind == "ident" and tok.text.lower() in ("true", "false"):
            return tok.text.lower() == "true"
        self._fail(f"expected a value ('text', a number, true or false), got {tok.text!r}")

    def _string(self) -> str:
        tok = self._next()
        if tok.kind != "string":
            self._fail(f"expected a quoted string, got {tok.text!r}")
        return tok.text[1:-1].replace("''", "'")

    def _next(self) -> _Tok:
        if self._pos >= len(self._tokens):
            self._fail("unexpected end of filter")
        tok = self._tokens[self._pos]
        self._pos += 1
        return tok

    def _expect(self, kind: str) -> str:
        tok = self._next()
        if tok.kind != kind:
            self._fail(f"expected a field name, got {tok.text!r}")
        return tok.text

    def _expect_word(self, word: str) -> None:
        tok = self._next()
        if tok.kind != "ident" or tok.text.lower() != word:
            self._fail(f"expected '{word}', got {tok.text!r} (supported: eq, search.in, and)")

    def _expect_punct(self, punct: str) -> None:
        tok = self._next()
        if tok.text != punct:
            self._fail(f"expected {punct!r}, got {tok.text!r}")

    def _peek_word(self, word: str) -> bool:
        return (
            self._pos < len(self._tokens)
            and self._tokens[self._pos].kind == "ident"
            and self._tokens[self._pos].text.lower() == word
        )

    def _peek_punct(self, punct: str) -> bool:
        return self._pos < len(self._tokens) and self._tokens[self._pos].text == punct

    def _fail(self, why: str) -> NoReturn:
        raise InvalidFilterError(f"filter: {why}", param=self._param)

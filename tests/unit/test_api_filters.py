"""The `filter` parameter: OData subset and JSON object -> MetadataFilter, bad syntax -> 400."""

from __future__ import annotations

import pytest

from api.filters import parse_filter
from core.errors import InvalidFilterError
from retrieval.index import MetadataFilter


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("doc_id eq 'it''s'", MetadataFilter(equals={"doc_id": "it's"})),
        ("page eq 3 and draft eq false", MetadataFilter(equals={"page": 3, "draft": False})),
        ("PAGE EQ -2 AND ok eq TRUE", MetadataFilter(equals={"PAGE": -2, "ok": True})),
        ("search.in(title, 'a,b c')", MetadataFilter(equals={"title": ["a", "b", "c"]})),
        ("search.in(title, 'x y|z', '|')", MetadataFilter(equals={"title": ["x y", "z"]})),
        ("metadata/lang eq 'en'", MetadataFilter(equals={"metadata.lang": "en"})),
        (
            "acl_groups/any(g: search.in(g, 'hr,finance'))",
            MetadataFilter(acl_groups=("hr", "finance")),
        ),
        (
            "group_ids/any(x: x eq 'hr') and title eq 'T'",
            MetadataFilter(equals={"title": "T"}, acl_groups=("hr",)),
        ),
        ("search.in(acl_groups, 'hr')", MetadataFilter(acl_groups=("hr",))),
        (
            '{"title": ["a", "b"], "page": 2, "acl_groups": "hr"}',
            MetadataFilter(equals={"title": ["a", "b"], "page": 2}, acl_groups=("hr",)),
        ),
    ],
)
def test_parse_filter_accepts_supported_syntax(text: str, expected: MetadataFilter) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text", [None, "", "   "])
def test_parse_filter_blank_means_no_filter(text: str | None) -> None:
    assert parse_filter(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a eq 'x' or b eq 'y'", "only 'and'"),
        ("a ne 1", "expected 'eq'"),
        ("a eq", "unexpected end"),
        ("a eq 'x' and a eq 'y'", "appears twice"),
        ("tags/any(t: t eq 'x')", "only supported on acl_groups"),
        ("acl_groups/any(g: h eq 'x')", "lambda variable"),
        ("search.in(a, '')", "at least one value"),
        ("a eq 'unterminated", "unexpected text"),
        ("a eq 1.5", "unexpected text"),
        ("{not json", "invalid JSON"),
        ("{}", "non-empty object"),
        ('{"a": 1.5}', "must be a string"),
        ('{"a": 99999999999999999999}', "64-bit integer"),
        ("a eq 99999999999999999999", "does not fit a 64-bit integer"),
        ('{"a": [1, "x"]}', "must be a string"),
        ('{"acl_groups": [1]}', "acl_groups must be"),
        ('{"bad key": 1}', "not a field name"),
    ],
)
def test_parse_filter_rejects_bad_syntax_with_400(text: str, why: str) -> None:
    with pytest.raises(InvalidFilterError, match=why) as caught:
        parse_filter(text, param="data_sources.0.parameters.filter")
    assert caught.value.status_code == 400
    assert caught.value.param == "data_sources.0.parameters.filter"

"""The access scope (core/access.py) and the typed job specs that carry a submitter's scope
(core/job_specs.py), including specs stored before they were typed."""

from __future__ import annotations

import pytest

from core.access import Scope
from core.errors import PermissionDeniedError
from core.job_specs import FolderSource, SourcesSpec, UploadSpec, UrlSource, read_spec


def test_scope_narrow_intersects_and_never_widens() -> None:
    key = Scope(role="reader", indexes=("x", "y"), groups=("hr",))
    assert key.narrow(groups=("hr", "finance")).groups == ("hr",)
    assert key.narrow(groups=("finance",)).groups == ()
    assert key.narrow(indexes=("y", "z")).indexes == ("y",)
    assert key.narrow() == key
    assert Scope(role="admin").narrow(groups=("eng",)).groups == ("eng",)


def test_scope_can_read_public_and_shared_groups_only() -> None:
    hr = Scope(role="reader", groups=("hr",))
    assert hr.can_read([])
    assert hr.can_read(["hr", "finance"])
    assert not hr.can_read(["eng"])
    assert Scope(role="reader", groups=()).can_read([])
    assert not Scope(role="reader", groups=()).can_read(["hr"])
    assert Scope(role="admin").can_read(["anything"])
    assert hr.as_filter() == ("hr",)
    assert Scope(role="admin").as_filter() is None


def test_scope_contains_only_what_it_holds() -> None:
    admin_hr = Scope(role="admin", indexes=("x",), groups=("hr",))
    assert admin_hr.contains(Scope(role="reader", indexes=("x",), groups=()))
    assert not admin_hr.contains(Scope(role="reader", indexes=("x",), groups=None))
    assert not admin_hr.contains(Scope(role="reader", indexes=None, groups=("hr",)))


def test_scope_labels_stay_within_the_callers_groups() -> None:
    hr = Scope(role="contributor", groups=("hr", "finance"))
    assert hr.labels([" hr ", ""]) == ["hr"]
    assert hr.labels([]) == ["hr", "finance"]
    with pytest.raises(PermissionDeniedError, match="eng"):
        hr.labels(["eng"])
    assert Scope(role="admin").labels([]) == []


def test_scope_owned_ids_differ_per_group_set_and_stay_for_unrestricted() -> None:
    base = "plan-md-0123456789ab"
    assert Scope(role="admin").owned_id(base) == base
    a = Scope(role="contributor", groups=("A",)).owned_id(base)
    b = Scope(role="contributor", groups=("B",)).owned_id(base)
    assert len({a, b, base}) == 3
    assert Scope(role="reader", groups=("B",)).owned_id(base) == b  # role plays no part
    assert Scope(role="contributor", groups=("x", "y")).owned_id(base) == Scope(
        role="contributor", groups=("y", "x")
    ).owned_id(base)


def test_job_specs_stored_before_typing_still_read() -> None:
    upload = read_spec(
        "upload",
        {
            "files": [{"path": "/d/u/1/a.md", "filename": "a.md", "doc_id": "a-md-1"}],
            "acl_groups": ["hr"],
            "metadata": {"lang": "en"},
        },
    )
    assert isinstance(upload, UploadSpec)
    assert (upload.files[0].doc_id, upload.acl_groups, upload.metadata) == (
        "a-md-1",
        ["hr"],
        {"lang": "en"},
    )
    assert upload.scope.groups is None  # what such jobs ran as
    sources = read_spec("sources", {"sources": [{"type": "url", "url": "https://e.org/"}]})
    assert isinstance(sources, SourcesSpec)
    assert sources.sources == [UrlSource(url="https://e.org/", crawl_depth=0)]
    assert read_spec("sources", None) == SourcesSpec()


def test_job_specs_round_trip_through_the_stored_json() -> None:
    spec = SourcesSpec(
        sources=[FolderSource(path="/srv/docs"), UrlSource(url="https://e.org/", crawl_depth=1)],
        acl_groups=["B"],
        submitter_groups=["B"],
    )
    stored = spec.model_dump(mode="json")
    assert read_spec("sources", stored) == spec
    assert read_spec("sources", stored).scope == Scope(role="contributor", groups=("B",))

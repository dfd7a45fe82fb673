"""Every path asks the caller's scope (core/access.py): a walk over every route of the app, and
one test per finding of the access-control probe (issue 10: 3, 4, 5, 6a, 6b).

One app (real uvicorn, in-process job consumer, ONNX embedder, Qdrant Edge). A contributor of
group A uploads a document with a unique secret, asks about it in a conversation and gives
feedback on the answer; an evaluation run names the index. The probes are an admin scoped to
another index, and a contributor and an admin of group B: none of them may see anything of
A's (secret, file name, doc id, job id, message id), and A's data must survive their calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, Route

from api.app import create_app
from core.db import make_engine
from core.keys import KeyStore
from core.settings import ApiSettings, JobsSettings, Settings
from tests.integration.api_support import serve_in_thread, wait_job

INDEX = "tenant"
OTHER = "other"
SECRET = "OKAPI-5120"
FILENAME = "launch-plan.md"
CONTENT = (
    b"# Launch plan\n\nThe launch code for the spring release is OKAPI-5120.\n"
    b"The launch is rehearsed every Thursday by the release team.\n"
)
QUESTION = "What is the launch code for the spring release?"
RUN_ID = "tenant-eval-run"
CONVERSATION = "a-launch-talk"
GROUPS_HEADER = "X-Test-Groups"


@dataclass(frozen=True)
class World:
    url: str
    root: Path
    keys: dict[str, str]
    doc_id: str
    job_id: str
    message_id: str

    def client(self, who: str, **headers: str) -> httpx.Client:
        auth = {"authorization": f"Bearer {self.keys[who]}", **headers}
        return httpx.Client(base_url=self.url, headers=auth, timeout=120)

    def markers(self, who: str) -> list[str]:
        """Strings only group A's data can put in a response (and, for a key scoped to another
        index, the evaluation run of this one)."""
        group_a = [SECRET, FILENAME, self.doc_id, self.job_id, self.message_id]
        return [*group_a, RUN_ID] if who == "admin_other" else group_a


def _keys(settings: Settings) -> dict[str, str]:
    engine = make_engine(settings.resolved_database_url)
    store = KeyStore(engine)
    keys = {
        "admin": store.create(role="admin").key,
        "contributor_a": store.create(role="contributor", groups=["A"]).key,
        "contributor_b": store.create(role="contributor", groups=["B"]).key,
        "admin_b": store.create(role="admin", groups=["B"]).key,
        "admin_other": store.create(role="admin", indexes=[OTHER]).key,
        "admin_tenant": store.create(role="admin", indexes=[INDEX]).key,
        "reader_public": store.create(role="reader").key,
    }
    engine.dispose()
    return keys


def upload(http: httpx.Client, name: str, data: bytes, **form: str) -> dict[str, Any]:
    files = [("files", (name, data, "text/markdown"))]
    response = http.post(f"/v1/indexes/{INDEX}/documents", files=files, data=form)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


def _chat_body(**extra: Any) -> dict[str, Any]:
    parameters = {"index_name": INDEX, "strictness": 1, "top_n_documents": 20}
    return {
        "messages": [{"role": "user", "content": QUESTION}],
        "data_sources": [{"type": "ondata", "parameters": parameters}],
        **extra,
    }


def _group_a_history(http: httpx.Client) -> str:
    answered = http.post("/v1/chat/completions", json=_chat_body(conversation_id=CONVERSATION))
    assert answered.status_code == 200, answered.text
    assert SECRET in answered.text, "the positive control: A's question finds A's secret"
    message_id = str(answered.json()["id"])
    feedback = f"/v1/conversations/{CONVERSATION}/messages/{message_id}/feedback"
    given = http.put(feedback, json={"rating": "down", "comment": "quote the code only"})
    assert given.status_code == 200, given.text
    return message_id


def _evaluation_run(settings: Settings) -> None:
    folder = settings.data_dir / "evaluations" / RUN_ID
    folder.mkdir(parents=True)
    summary = {"kind": "answers", "dataset": "launch", "created_at": "2026-01-01T00:00:00+00:00"}
    summary["index"] = {"name": INDEX}  # type: ignore[assignment]
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("access_scope")
    (root / "shared").mkdir()
    jobs = JobsSettings(poll_s=0.05, busy_retry_s=0.1, source_roots=(root / "shared",))
    api = ApiSettings(trusted_groups_header=GROUPS_HEADER)
    settings = Settings(data_dir=root / "ondata", jobs=jobs, api=api)
    keys = _keys(settings)
    _evaluation_run(settings)
    with serve_in_thread(create_app(settings)) as url:
        made = World(url, root, keys, "", "", "")
        with made.client("admin") as admin:
            for name in (INDEX, OTHER):
                assert admin.post("/v1/indexes", json={"name": name}).status_code == 201
        with made.client("contributor_a") as a:
            accepted = upload(a, FILENAME, CONTENT)
            assert wait_job(a, accepted["job_id"])["status"] == "succeeded"
            message_id = _group_a_history(a)
        doc_id = accepted["documents"][0]["doc_id"]
        yield World(url, root, keys, doc_id, accepted["job_id"], message_id)


# --- the walk over every route ---------------------------------------------------------------


def _routes(routes: list[BaseRoute]) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through included routers."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        elif isinstance(route, Route):
            yield from ((m, route.path) for m in sorted(route.methods or ()) if m != "HEAD")
        elif isinstance(route, Mount):
            yield ("MOUNT", route.path)


NOT_DATA = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/models",
    "/v1/keys",
    "/v1/search/capabilities",
    "/static",
    "/docs",
)
"""Routes that read or write no index, document, job, feedback, conversation or evaluation
(the app shell, its static files and API docs, health, models, the server's search
capabilities, and keys, whose scope containment test_auth_api.py checks)."""


def _is_data(path: str) -> bool:
    shell = path in ("/", "/openapi.json", "/redoc") or path.startswith(NOT_DATA)
    return not shell


@dataclass(frozen=True)
class Call:
    """A request at group A's data, and whether the route names one of A's objects."""

    path: str
    json: Any = None
    files: Any = None
    params: Any = None
    targets_a: bool = False


def _calls(w: World) -> dict[tuple[str, str], Call]:
    chat = _chat_body()
    doc = f"/v1/indexes/{INDEX}/documents/{w.doc_id}"
    job = f"/v1/ingestion/jobs/{w.job_id}"
    conversation = f"/v1/conversations/{CONVERSATION}"
    feedback = f"{conversation}/messages/{w.message_id}/feedback"
    upload_part = [("files", ("walker.md", b"# Walker\n\nA walker's note.\n", "text/markdown"))]
    folder_job = {"index_name": INDEX, "sources": [{"type": "folder", "path": "."}]}
    return {
        ("POST", "/v1/chat/completions"): Call("/v1/chat/completions", json=chat),
        ("POST", "/openai/deployments/{deployment}/chat/completions"): Call(
            "/openai/deployments/d/chat/completions?api-version=2024-10-21", json=chat
        ),
        ("POST", "/v1/search"): Call(
            "/v1/search", json={"index_name": INDEX, "query": QUESTION, "strictness": 1}
        ),
        ("GET", "/v1/conversations"): Call("/v1/conversations"),
        ("POST", "/v1/conversations"): Call("/v1/conversations", json={"title": "mine"}),
        ("GET", "/v1/conversations/{conversation_id}"): Call(conversation, targets_a=True),
        ("PATCH", "/v1/conversations/{conversation_id}"): Call(
            conversation, json={"title": "taken"}, targets_a=True
        ),
        ("PUT", "/v1/conversations/{conversation_id}/messages/{message_id}/feedback"): Call(
            feedback, json={"rating": "up"}, targets_a=True
        ),
        ("DELETE", "/v1/conversations/{conversation_id}/messages/{message_id}/feedback"): Call(
            feedback, targets_a=True
        ),
        ("DELETE", "/v1/conversations/{conversation_id}"): Call(conversation, targets_a=True),
        ("GET", "/v1/feedback"): Call("/v1/feedback"),
        ("GET", "/v1/evaluations"): Call("/v1/evaluations"),
        ("GET", "/v1/evaluations/{run_id}"): Call(f"/v1/evaluations/{RUN_ID}"),
        ("GET", "/v1/indexes"): Call("/v1/indexes"),
        ("POST", "/v1/indexes"): Call("/v1/indexes", json={"name": INDEX}),
        ("GET", "/v1/indexes/{name}"): Call(f"/v1/indexes/{INDEX}"),
        ("PATCH", "/v1/indexes/{name}"): Call(f"/v1/indexes/{INDEX}", json={"description": "d"}),
        ("POST", "/v1/indexes/{name}/documents"): Call(
            f"/v1/indexes/{INDEX}/documents", files=upload_part
        ),
        ("GET", "/v1/indexes/{name}/documents"): Call(f"/v1/indexes/{INDEX}/documents"),
        ("GET", "/v1/indexes/{name}/documents/{doc_id}"): Call(doc, targets_a=True),
        ("GET", "/v1/indexes/{name}/documents/{doc_id}/content"): Call(
            f"{doc}/content", targets_a=True
        ),
        ("DELETE", "/v1/indexes/{name}/documents/{doc_id}"): Call(doc, targets_a=True),
        ("POST", "/v1/ingestion/jobs"): Call("/v1/ingestion/jobs", json=folder_job),
        ("GET", "/v1/ingestion/jobs"): Call("/v1/ingestion/jobs", params={"index_name": INDEX}),
        ("GET", "/v1/ingestion/jobs/{job_id}"): Call(job, targets_a=True),
        ("POST", "/v1/ingestion/jobs/{job_id}/cancel"): Call(f"{job}/cancel", targets_a=True),
        ("DELETE", "/v1/ingestion/jobs/{job_id}"): Call(job, targets_a=True),
        # last: it would take A's documents with it
        ("DELETE", "/v1/indexes/{name}"): Call(f"/v1/indexes/{INDEX}", targets_a=True),
    }


def _send(http: httpx.Client, method: str, call: Call) -> httpx.Response:
    return http.request(method, call.path, json=call.json, files=call.files, params=call.params)


def _leaks(response: httpx.Response, call: Call, markers: list[str]) -> list[str]:
    """Markers in the response that the request did not carry itself (an echoed id is none)."""
    sent = f"{call.path} {call.json} {call.params}"
    return [m for m in markers if m in response.text and m not in sent]


def _index_bound(path: str, call: Call) -> bool:
    """Whether the route acts on the index (or on a run of it) the call names."""
    if any(p in path for p in ("{name}", "{doc_id}", "{job_id}", "{run_id}")):
        return True
    body = call.json if isinstance(call.json, dict) else {}
    return body.get("index_name") == INDEX or body.get("name") == INDEX or "data_sources" in body


def test_every_data_route_is_classified(world: World) -> None:
    """A new route that touches data must be added to the walk (or it is not checked)."""
    app: FastAPI = create_app(Settings(data_dir=world.root / "probe-only"))
    data = {(m, p) for m, p in _routes(app.routes) if _is_data(p)}
    assert data == set(_calls(world)), "classify the new route in _calls (or NOT_DATA)"


@pytest.mark.parametrize("who", ["admin_other", "contributor_b", "admin_b"])
def test_every_route_asks_the_scope(world: World, who: str) -> None:
    """Another index's admin is refused at every route bound to the index (403/404); group
    B's contributor and admin reach the index but see nothing of group A's, and every
    object of A's they name is a 404. Nobody gets a 5xx, and A's data survives."""
    problems: list[str] = []
    with world.client(who) as http:
        for (method, path), call in _calls(world).items():
            response = _send(http, method, call)
            where = f"{method} {path}: {response.status_code}"
            if response.status_code >= 500:
                problems.append(f"{where} (server error)")
            if leaked := _leaks(response, call, world.markers(who)):
                problems.append(f"{where} shows {leaked}")
            refused = response.status_code in (403, 404)
            if who == "admin_other" and _index_bound(path, call) and not refused:
                problems.append(f"{where} (another index's key reached {INDEX!r})")
            if who != "admin_other" and call.targets_a and not refused:
                problems.append(f"{where} (group B reached an object of group A's)")
    assert problems == []
    _assert_group_a_intact(world)


def _assert_group_a_intact(world: World) -> None:
    with world.client("contributor_a") as a:
        doc = a.get(f"/v1/indexes/{INDEX}/documents/{world.doc_id}")
        assert doc.status_code == 200, doc.text
        assert doc.json()["acl_groups"] == ["A"]
        assert a.get(f"/v1/ingestion/jobs/{world.job_id}").status_code == 200
        talk = a.get(f"/v1/conversations/{CONVERSATION}")
        assert talk.status_code == 200, talk.text
        assert talk.json()["messages"][1]["feedback"]["rating"] == "down"


# --- one test per finding --------------------------------------------------------------------


def test_finding3_a_same_named_upload_becomes_the_callers_own_document(world: World) -> None:
    """Group B uploading A's file name with A's exact bytes neither replaces A's document nor
    learns that it exists: it gets a document of its own, indexed (not 'unchanged')."""
    with world.client("contributor_b") as b:
        accepted = upload(b, FILENAME, CONTENT)
        done = wait_job(b, accepted["job_id"])
        mine = accepted["documents"][0]["doc_id"]
        listed = b.get(f"/v1/indexes/{INDEX}/documents").json()["data"]
    assert mine != world.doc_id
    assert done["status"] == "succeeded", done
    assert (done["progress"]["indexed"], done["progress"]["unchanged"]) == (1, 0)
    assert world.doc_id not in json.dumps(done)
    assert {d["doc_id"]: d["acl_groups"] for d in listed}.get(mine) == ["B"]
    assert world.doc_id not in {d["doc_id"] for d in listed}
    _assert_group_a_intact(world)


def test_finding3_a_folder_sync_never_replaces_or_deletes_hidden_documents(world: World) -> None:
    """Group A's folder job ingests two files; group B then syncs the same folder after one
    file is gone. B gets documents of its own; A's two stay, still labelled A."""
    folder = world.root / "shared" / "team"
    folder.mkdir()
    (folder / "kept.md").write_text("# Kept\n\nThe kept note names the harbour office.\n")
    (folder / "gone.md").write_text("# Gone\n\nThe gone note names the lighthouse office.\n")
    body = {"index_name": INDEX, "sources": [{"type": "folder", "path": "team"}]}
    with world.client("contributor_a") as a:
        first = wait_job(a, a.post("/v1/ingestion/jobs", json=body).json()["id"])
    assert first["progress"]["indexed"] == 2, first
    (folder / "gone.md").unlink()
    with world.client("contributor_b") as b:
        second = wait_job(b, b.post("/v1/ingestion/jobs", json=body).json()["id"])
    assert (second["progress"]["indexed"], second["progress"]["deleted"]) == (1, 0), second
    with world.client("contributor_a") as a:
        docs = a.get(f"/v1/indexes/{INDEX}/documents").json()["data"]
    team = [d for d in docs if d["filename"] in ("kept.md", "gone.md")]
    assert sorted((d["filename"], d["acl_groups"]) for d in team) == [
        ("gone.md", ["A"]),
        ("kept.md", ["A"]),
    ]


def test_finding4_job_list_and_detail_hide_other_groups_jobs(world: World) -> None:
    with world.client("contributor_b") as b:
        listed = b.get("/v1/ingestion/jobs", params={"index_name": INDEX})
        detail = b.get(f"/v1/ingestion/jobs/{world.job_id}")
    assert listed.status_code == 200
    assert world.job_id not in listed.text
    assert world.doc_id not in listed.text  # (B's own upload of the same name has another id)
    assert detail.status_code == 404
    with world.client("contributor_a") as a:  # the positive control
        assert world.job_id in a.get("/v1/ingestion/jobs", params={"index_name": INDEX}).text


@pytest.mark.parametrize("who", ["admin_other", "admin_b", "admin_tenant"])
def test_finding5_scoped_admins_see_only_their_own_feedback(world: World, who: str) -> None:
    with world.client(who) as http:
        response = http.get("/v1/feedback")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == []
    assert SECRET not in response.text
    with world.client("admin") as admin:  # the positive control: every index and document
        assert SECRET in admin.get("/v1/feedback").text


def test_finding6a_evaluation_runs_of_other_indexes_are_hidden(world: World) -> None:
    with world.client("admin_other") as other:
        assert RUN_ID not in other.get("/v1/evaluations").text
        assert other.get(f"/v1/evaluations/{RUN_ID}").status_code == 404
    with world.client("admin_tenant") as tenant:
        assert RUN_ID in tenant.get("/v1/evaluations").text
        assert tenant.get(f"/v1/evaluations/{RUN_ID}").status_code == 200


def test_finding6b_index_counts_cover_only_readable_documents(world: World) -> None:
    with world.client("reader_public") as public:
        seen = public.get(f"/v1/indexes/{INDEX}").json()
    with world.client("admin") as admin:
        everything = admin.get(f"/v1/indexes/{INDEX}").json()
        listed = admin.get(f"/v1/indexes/{INDEX}/documents").json()["data"]
    public_docs = [d for d in listed if not d["acl_groups"]]
    assert seen["document_count"] == len(public_docs)
    assert seen["chunk_count"] == sum(d["chunk_count"] for d in public_docs)
    assert seen["vector_count"] is None  # index-wide: it would count hidden chunks
    assert everything["document_count"] == len(listed) > seen["document_count"]
    assert everything["vector_count"] >= everything["chunk_count"] > 0


def test_a_trusted_groups_header_narrows_the_key_and_never_widens_it(world: World) -> None:
    """The gateway's groups intersect the key's: a public-only reader stays public-only."""
    search = {"index_name": INDEX, "query": QUESTION, "strictness": 1, "top_n_documents": 20}
    with world.client("reader_public", **{GROUPS_HEADER: "A"}) as widened:
        assert SECRET not in widened.post("/v1/search", json=search).text
    with world.client("admin", **{GROUPS_HEADER: "A"}) as gateway:  # the positive control
        assert SECRET in gateway.post("/v1/search", json=search).text

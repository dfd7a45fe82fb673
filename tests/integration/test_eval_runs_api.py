"""GET /v1/evaluations lists the runs `ondata eval` wrote; GET /v1/evaluations/{id} returns one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from core.settings import Settings
from evaluation.report import write_reports


def _summary(run_id: str, created_at: str) -> dict[str, object]:
    return {
        "id": run_id,
        "kind": "retrieval",
        "created_at": created_at,
        "dataset": "smoke",
        "split": "test",
        "queries": 8,
        "seconds": 1.5,
        "modes": {"hybrid": {"ndcg@10": 0.9}},
    }


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    runs = settings.data_dir / "evaluations"
    write_reports(_summary("old", "2026-01-01T00:00:00+00:00"), [], runs / "old")
    write_reports(_summary("new", "2026-02-01T00:00:00+00:00"), [], runs / "new")
    (runs / "broken").mkdir()
    (runs / "broken" / "summary.json").write_text("{not json")
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        yield c


async def test_evaluations_are_listed_and_read_back(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/evaluations")
    assert response.status_code == 200
    data = response.json()["data"]
    assert [run["id"] for run in data] == ["new", "old"]  # newest first; unreadable left out
    assert (data[0]["kind"], data[0]["queries"]) == ("retrieval", 8)

    one = await client.get("/v1/evaluations/new")
    assert one.status_code == 200
    assert one.json()["modes"]["hybrid"]["ndcg@10"] == 0.9

    for run_id in ("missing", ".hidden", "broken"):
        missing = await client.get(f"/v1/evaluations/{run_id}")
        assert missing.status_code == 404, run_id
        assert missing.json()["error"]["code"] == "evaluation_not_found"

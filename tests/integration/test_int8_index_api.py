"""An index built with the fp32 encoder, served by an int8 server: searches and chats over it
are refused with a clear 409 (the query vectors would live in another space)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.app import create_app
from core.settings import EmbeddingSettings, Settings
from tests.integration.api_support import INDEX, build_index, serve_in_thread


@pytest.fixture(scope="module")
def fp32_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("int8_api")
    settings = Settings(data_dir=root / "ondata")
    build_index(settings, root / "docs")
    return settings.data_dir


def test_an_int8_server_refuses_an_fp32_index(fp32_data_dir: Path) -> None:
    settings = Settings(data_dir=fp32_data_dir, embedding=EmbeddingSettings(precision="int8"))
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        search = http.post("/v1/search", json={"index_name": INDEX, "query": "hotel limit"})
        assert search.status_code == 409, search.text
        error = search.json()["error"]
        assert error["code"] == "embedding_model_mismatch"
        assert "'all-MiniLM-L6-v2'" in error["message"]
        assert "'all-MiniLM-L6-v2-int8'" in error["message"]
        assert "embedding.precision" in error["message"]
        chat = http.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "What is the hotel limit?"}],
                "data_sources": [{"type": "ondata", "parameters": {"index_name": INDEX}}],
            },
        )
        assert chat.status_code == 409, chat.text
        # listing indexes still works: only opening one for queries is refused
        assert http.get(f"/v1/indexes/{INDEX}").status_code == 200

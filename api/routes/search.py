"""POST /v1/search: retrieval only, no answer."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.convert import search_request, search_response
from api.deps import SearcherDep, require_api_key
from api.schemas import SearchRequestBody, SearchResponse

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["search"])


@router.post("/v1/search")
async def search(body: SearchRequestBody, searcher: SearcherDep) -> SearchResponse:
    """The best chunks of one index for a query, after strictness and top_n_documents."""
    result = await searcher.search(search_request(body))
    return search_response(result)

"""POST /v1/search: retrieval only, no answer."""

from __future__ import annotations

from typing import get_args

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from api.convert import fallback_headers, reranks, search_request, search_response
from api.deps import CallerDep, SearcherDep, require_api_key
from api.openapi import KEYED, errors
from api.schemas import QueryType, SearchCapabilities, SearchRequestBody, SearchResponse

router = APIRouter(
    dependencies=[Depends(require_api_key)],
    tags=["search"],
    responses=KEYED | errors(403, 404, 502, 503),
)


@router.get("/v1/search/capabilities")
async def capabilities(searcher: SearcherDep) -> SearchCapabilities:
    """The query types this server runs as asked (the semantic ones need a reranker; without
    one they run as vector_simple_hybrid) and the reranker's name."""
    reranker = searcher.reranker
    served = [t for t in get_args(QueryType) if reranker is not None or not reranks(t)]
    return SearchCapabilities(query_types=served, reranker=reranker.name if reranker else None)


@router.post("/v1/search", response_model=SearchResponse)
async def search(body: SearchRequestBody, searcher: SearcherDep, caller: CallerDep) -> Response:
    """The best chunks of one index for a query, after strictness and top_n_documents, among
    the documents the caller's ACL groups may read (filtered inside the index)."""
    request = search_request(body)
    result = await searcher.search(caller.scoped_search(request))
    headers = fallback_headers(request.rerank, reranker=searcher.reranker)
    # serialised once here: returning the model would have FastAPI validate it all again
    return Response(
        search_response(result).model_dump_json(), media_type="application/json", headers=headers
    )

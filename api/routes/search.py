"""POST /v1/search: retrieval only, no answer."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from api.convert import search_request, search_response
from api.deps import CallerDep, SearcherDep, require_api_key
from api.schemas import SearchRequestBody, SearchResponse

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["search"])


@router.post("/v1/search", response_model=SearchResponse)
async def search(body: SearchRequestBody, searcher: SearcherDep, caller: CallerDep) -> Response:
    """The best chunks of one index for a query, after strictness and top_n_documents, among
    the documents the caller's ACL groups may read (filtered inside the index)."""
    result = await searcher.search(caller.scoped_search(search_request(body)))
    # serialised once here: returning the model would have FastAPI validate it all again
    return Response(search_response(result).model_dump_json(), media_type="application/json")

"""GET /v1/models: the model that answers (the chat model, or the extractive answerer)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import AnswersDep, require_api_key
from api.openapi import KEYED, errors
from api.schemas import ModelCard, ModelList
from core.errors import ModelNotFoundError

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["models"], responses=KEYED)


@router.get("/v1/models")
async def list_models(answers: AnswersDep) -> ModelList:
    return ModelList(data=[ModelCard(id=answers.model_name)])


@router.get("/v1/models/{model_id}", responses=errors(404))
async def get_model(model_id: str, answers: AnswersDep) -> ModelCard:
    if model_id != answers.model_name:
        raise ModelNotFoundError(f"model {model_id!r} does not exist", param="model")
    return ModelCard(id=answers.model_name)

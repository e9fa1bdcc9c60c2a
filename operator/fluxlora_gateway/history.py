"""The hosted platform's prediction history (`POST /api/v3/predictions`), as pure functions: the
query, the key's predictions filtered and paged newest first."""

from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from fluxlora_api.prediction import HostedModel, Prediction, prediction
from fluxlora_api.status import Phase

HISTORY_PATH = "/api/v3/predictions"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


class HistoryQuery(HostedModel):
    """What a history request may ask for; every filter is optional."""

    page: int = Field(1, ge=1)
    """Page number, from 1."""
    page_size: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    """Predictions per page."""
    model: str | None = None
    """Only predictions of this model."""
    status: Phase | None = None
    """Only predictions in this state."""
    created_after: datetime | None = None
    """Only predictions created at or after this time (ISO 8601; UTC when no zone is given)."""
    created_before: datetime | None = None
    """Only predictions created before this time."""

    @field_validator("created_after", "created_before")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        if moment is not None and moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment


class HistoryItem(Prediction):
    """A prediction as the history lists it."""

    executionTime: int = Field(ge=0)
    """Training time in milliseconds (timings.inference)."""


class History(HostedModel):
    """One page of the key's predictions, newest first."""

    page: int
    """The page number asked for."""
    total: int
    """How many predictions match, on all pages."""
    items: list[HistoryItem]
    """This page's predictions."""


def _created(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))


def history(resources: list[dict[str, Any]], query: HistoryQuery, base_url: str) -> History:
    """The page `query` asks for of the predictions these resources are."""
    items = [prediction(resource, base_url) for resource in resources]
    matching = [
        item
        for item in items
        if (query.model is None or item["model"] == query.model)
        and (query.status is None or item["status"] == query.status)
        and (query.created_after is None or _created(item) >= query.created_after)
        and (query.created_before is None or _created(item) < query.created_before)
    ]
    matching.sort(key=lambda item: (item["created_at"], item["id"]), reverse=True)
    start = (query.page - 1) * query.page_size
    page = matching[start : start + query.page_size]
    return History(
        page=query.page,
        total=len(matching),
        items=[HistoryItem(**item, executionTime=item["timings"]["inference"]) for item in page],
    )

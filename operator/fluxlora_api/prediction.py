"""The hosted API's prediction object, built from a LoRATrainingJob: what the gateway answers
about a task, and what a webhook sends when it ends. Field names and status words are the hosted
platform's; output links go through the gateway, which streams only the run's own files."""

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from fluxlora_api.outputs import belongs_to_run
from fluxlora_api.resource import GROUP
from fluxlora_api.status import DATE_TIME, Phase, Timings, hosted_created_at, phase_of

# Set by the gateway on the resources it creates: where their prediction links point (a
# webhook sends the same links the gateway answers).
GATEWAY_URL_ANNOTATION = f"{GROUP}/gateway-url"
MODEL_ID = "wavespeed-ai/flux-dev-lora-trainer"
RESULT_PATH = "/api/v3/predictions/{id}/result"
OUTPUT_PATH = "/api/v3/predictions/{id}/outputs/{file}"


class HostedModel(BaseModel):
    """The hosted API's objects: snake_case on the wire, documented from the docstrings."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class PredictionUrls(HostedModel):
    get: str = Field(json_schema_extra={"format": "uri"})
    """Where to poll for the result."""


class Prediction(HostedModel):
    """The hosted API's prediction object: the `data` of every answer about a task."""

    id: str
    """Task id (the LoRATrainingJob's uid)."""
    model: str
    """The model id, as in the hosted API."""
    outputs: list[str] = Field(json_schema_extra={"items": {"format": "uri"}})
    """Download URLs of the LoRA and its companion files, through the gateway (empty until
    completed)."""
    urls: PredictionUrls
    has_nsfw_contents: list[bool]
    """One flag per output; nothing is checked for NSFW content, so always false."""
    status: Phase
    """The task's state."""
    created_at: str = Field(json_schema_extra=DATE_TIME)
    """When the task was created, ISO 8601 with milliseconds."""
    error: str
    """Why the task failed; empty otherwise."""
    timings: Timings
    """Training time; inference is in milliseconds."""


def created_at(resource: dict[str, Any]) -> str:
    status = resource.get("status") or {}
    return status.get("createdAt") or hosted_created_at(resource["metadata"]["creationTimestamp"])


def output_file(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def own_outputs(resource: dict[str, Any]) -> list[str]:
    """The completed run's output URLs that lie in its own folder; anything else in the status
    (written by whoever could patch it) is never shown or streamed."""
    status = resource.get("status") or {}
    if status.get("phase") != Phase.COMPLETED:
        return []
    meta = resource["metadata"]
    prefix = (resource.get("spec") or {}).get("output")
    return [
        url
        for url in status.get("outputs") or []
        if isinstance(url, str)
        and belongs_to_run(url, meta["namespace"], meta["name"], meta["uid"], prefix)
    ]


def prediction(resource: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The `data` object of both endpoints, read from the resource and its status."""
    status = resource.get("status") or {}
    uid = resource["metadata"]["uid"]
    outputs = [
        base_url + OUTPUT_PATH.format(id=uid, file=quote(output_file(url)))
        for url in own_outputs(resource)
    ]
    return Prediction(
        id=uid,
        model=MODEL_ID,
        outputs=outputs,
        urls=PredictionUrls(get=base_url + RESULT_PATH.format(id=uid)),
        has_nsfw_contents=[False] * len(outputs),
        status=phase_of(status) or Phase.CREATED,
        created_at=created_at(resource),
        error=status.get("error") or "",
        timings=Timings(inference=int((status.get("timings") or {}).get("inference") or 0)),
    ).model_dump(mode="json")

"""The hosted API's wire format, as pure functions: request bodies to specs, resources to the
prediction object, and the response envelope. Field names, status words and the envelope are the
reference's; the validation is the CRD's own model."""

import json
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError

from fluxlora_api.prediction import MODEL_ID, HostedModel, Prediction, prediction
from fluxlora_api.spec import HOSTED_REQUEST_FIELDS, LoRATrainingJobSpec

SUBMIT_PATH = f"/api/v3/{MODEL_ID}"
PREDICTION_PATH = "/api/v3/predictions/{id}"  # the platform's general spelling of RESULT_PATH
DELETE_MANY_PATH = "/api/v3/predictions/delete"
MAX_DELETE_IDS = 100
MAX_BODY_BYTES = 64 * 1024


class RequestError(ValueError):
    """A request the gateway answers with 400; the message names the field."""


class SubmitOptions(HostedModel):
    """Fields of a submission about how it is answered, not about the training."""

    enable_sync_mode: bool = False
    """Hold the answer until the run ends, and answer with its final prediction; past the
    gateway's sync wait, the prediction as it is then, marked as a sync-mode timeout."""


# Beyond the hosted request: what a person steering a run asks for (the web page sends them).
GATEWAY_REQUEST_FIELDS = ("sample_prompts", "save_every_steps", "sample_every_steps")
SUBMIT_FIELDS = (*HOSTED_REQUEST_FIELDS, *GATEWAY_REQUEST_FIELDS, *SubmitOptions.model_fields)


def _first_error(error: ValidationError, names: dict[str, str] | None = None) -> RequestError:
    """The first problem, naming its field (`names` maps aliases to the caller's names)."""
    first = error.errors()[0]
    field = ".".join((names or {}).get(str(part), str(part)) for part in first["loc"]) or "body"
    message = "is required" if first["type"] == "missing" else first["msg"]
    return RequestError(f"{field}: {message}")


def parse_request(raw: bytes) -> tuple[dict[str, Any], SubmitOptions]:
    """The LoRATrainingJob spec (camelCase) for a submission body, with only the fields the
    caller gave, so the API server fills in the same defaults as for `kubectl apply`; and how
    the caller wants the answer."""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"body: larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(f"body: not valid JSON ({error})") from None
    if not isinstance(body, dict):
        raise RequestError("body: must be a JSON object")
    unknown = sorted(set(body) - set(SUBMIT_FIELDS))
    if unknown:
        allowed = ", ".join(SUBMIT_FIELDS)
        raise RequestError(f"{unknown[0]}: unknown field (the fields are {allowed})")
    given = {name: body.pop(name) for name in SubmitOptions.model_fields if name in body}
    try:
        options = SubmitOptions.model_validate(given)
        spec = LoRATrainingJobSpec.model_validate(body)
    except ValidationError as error:
        fields = LoRATrainingJobSpec.model_fields.items()
        names = {info.alias or name: name for name, info in fields}
        raise _first_error(error, names) from None
    return spec.model_dump(mode="json", by_alias=True, include=set(body)), options


def check_spec_defaults(defaults: dict[str, Any]) -> dict[str, Any]:
    """The platform's defaults for the spec fields the hosted API does not expose (baseModel,
    resolution, output, placement...), checked against the spec model; callers' fields win."""
    if not isinstance(defaults, dict):
        raise ValueError("spec defaults: must be a JSON object")
    hosted_given = sorted(set(defaults) & set(HOSTED_REQUEST_FIELDS))
    if hosted_given:
        raise ValueError(f"spec defaults: {hosted_given[0]} is the caller's to choose")
    try:
        spec = LoRATrainingJobSpec.model_validate({"data": "https://example.com/a.zip", **defaults})
    except ValidationError as error:
        raise ValueError(f"spec defaults: {error}") from None
    return spec.model_dump(
        mode="json", by_alias=True, include=set(spec.model_fields_set) - {"data"}
    )


Body = TypeVar("Body", bound=HostedModel)


SYNC_TIMEOUT_CODE: Literal[5004] = 5004  # what the hosted SDK reads as "sync mode timed out"


class SyncTimedOut(Prediction):
    """A sync-mode submission's answer when the run did not end within the gateway's wait: the
    prediction as it is, with `error` saying so; the run goes on, poll `urls.get`."""

    code: Literal[5004] = SYNC_TIMEOUT_CODE
    """The hosted platform's code for a sync-mode timeout."""


WEBHOOK_SECRET_PATH = "/api/v3/webhook/secret"


class WebhookSecret(HostedModel):
    """The key's webhook secret: what every webhook of its namespace is signed with."""

    secret: str
    """whsec_...: remove the prefix and use the rest, as it is, as the HMAC-SHA256 key."""


class Deleted(HostedModel):
    """The answer to deleting one prediction."""

    id: str
    """The deleted task's id."""
    status: Literal["deleted"] = "deleted"
    """Always `deleted` (a final status, as the hosted SDK treats it)."""


class DeleteMany(HostedModel):
    """The body of a batch delete."""

    ids: list[str] = Field(max_length=MAX_DELETE_IDS)
    """Task ids; ids this key does not know are ignored."""


class DeletedCount(HostedModel):
    """The answer to a batch delete."""

    deleted_count: int = Field(ge=0)
    """How many of the ids were this key's predictions, now deleted."""


def parse_body(model: type[Body], raw: bytes) -> Body:
    """A JSON request body as `model`; errors name the field."""
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(f"body: not valid JSON ({error})") from None
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise _first_error(error) from None


def sync_timed_out(resource: dict[str, Any], base_url: str, waited: float) -> dict[str, Any]:
    """The answer to a sync-mode submission whose run had not ended after `waited` seconds."""
    answer = prediction(resource, base_url)
    answer["error"] = (
        f"Sync mode timed out after {waited:g} s; the task goes on: poll {answer['urls']['get']}"
    )
    return SyncTimedOut.model_validate(answer).model_dump(mode="json")


def envelope(code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "data": data if data is not None else {}}

"""GET /openapi.json: the gateway's API, described from the same models that validate it."""

from typing import Any

from fluxlora_api.spec import DEFAULT_LEARNING_RATE, HOSTED_REQUEST_FIELDS, LoRATrainingJobSpec
from fluxlora_gateway import hosted


def _request_schema() -> dict[str, Any]:
    full = LoRATrainingJobSpec.model_json_schema(by_alias=False)
    properties = {name: full["properties"][name] for name in HOSTED_REQUEST_FIELDS}
    # The spec leaves it unset so that each optimizer gets its own; hosted runs train with AdamW.
    properties["learning_rate"] = {**properties["learning_rate"], "default": DEFAULT_LEARNING_RATE}
    return {
        "type": "object",
        "required": ["data"],
        "additionalProperties": False,
        "properties": properties,
    }


SCHEMAS = "#/components/schemas/{model}"


def _prediction_schemas() -> dict[str, Any]:
    """Prediction and the models it holds, as components (the same model makes the answers)."""
    schema = hosted.Prediction.model_json_schema(ref_template=SCHEMAS)
    return {**schema.pop("$defs", {}), "Prediction": schema}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "data": data,
        },
    }


def _answers(ok: str, *errors: int) -> dict[str, Any]:
    reasons = {
        400: "bad request: the message names the field",
        401: "missing or unknown key",
        404: "no such prediction for this key",
    }
    answers = {
        "200": {
            "description": ok,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictionResponse"}}
            },
        }
    }
    for code in errors:
        answers[str(code)] = {
            "description": reasons[code],
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
        }
    return answers


def openapi_document(base_url: str) -> dict[str, Any]:
    id_parameter = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "FLUX.1-dev LoRA trainer", "version": "v3"},
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": {
            hosted.SUBMIT_PATH: {
                "post": {
                    "summary": "Submit a training task",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/TrainingRequest"}
                            }
                        },
                    },
                    "responses": _answers("the task, status created", 400, 401),
                }
            },
            hosted.RESULT_PATH: {
                "get": {
                    "summary": "Get the task's result",
                    "parameters": [id_parameter],
                    "responses": _answers("the task", 401, 404),
                }
            },
            hosted.OUTPUT_PATH: {
                "get": {
                    "summary": "Download one output file of a completed task",
                    "parameters": [
                        id_parameter,
                        {
                            "name": "file",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {"description": "the file"},
                        "401": {"description": "missing or unknown key"},
                        "404": {"description": "no such task or file"},
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "TrainingRequest": _request_schema(),
                **_prediction_schemas(),
                "PredictionResponse": _envelope({"$ref": SCHEMAS.format(model="Prediction")}),
                "ErrorResponse": _envelope({"type": "object"}),
            },
        },
    }

"""GET /openapi.json: the gateway's API, described from the same models that validate it."""

from typing import Any

from fluxlora_api.prediction import OUTPUT_PATH, RESULT_PATH, Prediction
from fluxlora_api.spec import (
    DEFAULT_LEARNING_RATE,
    HOSTED_REQUEST_FIELDS,
    MAX_WEBHOOK_CHARS,
    LoRATrainingJobSpec,
)
from fluxlora_api.status import Phase
from fluxlora_gateway import dataset_check, hosted, runs, uploads
from fluxlora_gateway.history import HISTORY_PATH, History, HistoryQuery


def _request_schema() -> dict[str, Any]:
    full = LoRATrainingJobSpec.model_json_schema(by_alias=False)
    wanted = (*HOSTED_REQUEST_FIELDS, *hosted.GATEWAY_REQUEST_FIELDS)
    properties = {name: full["properties"][name] for name in wanted}
    # The spec leaves it unset so that each optimizer gets its own; hosted runs train with AdamW.
    properties["learning_rate"] = {**properties["learning_rate"], "default": DEFAULT_LEARNING_RATE}
    options = hosted.SubmitOptions.model_json_schema()["properties"]
    properties.update(options)
    return {
        "type": "object",
        "required": ["data"],
        "additionalProperties": False,
        "properties": properties,
    }


SCHEMAS = "#/components/schemas/{model}"
# The answers' `data` models; each is a component, with an envelope <Model>Response around it.
ANSWERS = (
    Prediction,
    hosted.SyncTimedOut,
    hosted.Deleted,
    hosted.DeletedCount,
    hosted.WebhookSecret,
    History,
    uploads.UploadTicket,
    uploads.UploadedFile,
    runs.Runs,
    runs.RunDetails,
    runs.LossCurve,
    dataset_check.DatasetReport,
)
REQUESTS = (hosted.DeleteMany, HistoryQuery, uploads.UploadRequest, dataset_check.InspectRequest)


def _model_schemas() -> dict[str, Any]:
    """Each answer model and the models it holds, as components (the same models make the
    answers), and the request bodies."""
    schemas: dict[str, Any] = {}
    for model in (*ANSWERS, *REQUESTS):
        schema = model.model_json_schema(ref_template=SCHEMAS)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for model in ANSWERS:
        ref = {"$ref": SCHEMAS.format(model=model.__name__)}
        schemas[f"{model.__name__}Response"] = _envelope(ref)
    return schemas


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "data": data,
        },
    }


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": SCHEMAS.format(model=schema)}}}


def _answers(ok: str, *errors: int, answer: str = "Prediction") -> dict[str, Any]:
    reasons = {
        400: "bad request: the message names the field",
        401: "missing or unknown key",
        404: "no such prediction for this key",
        413: "larger than the gateway's upload limit",
        501: "uploads are not configured on this gateway",
    }
    answers = {"200": {"description": ok, "content": _json(f"{answer}Response")}}
    for code in errors:
        answers[str(code)] = {"description": reasons[code], "content": _json("ErrorResponse")}
    return answers


BINARY = {"type": "string", "format": "binary"}


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document(base_url: str) -> dict[str, Any]:
    id_parameter = _path_parameter("id")
    return {
        "openapi": "3.1.0",
        "info": {"title": "FLUX.1-dev LoRA trainer", "version": "v3"},
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": {
            hosted.SUBMIT_PATH: {
                "post": {
                    "summary": "Submit a training task",
                    "parameters": [
                        {
                            "name": "webhook",
                            "in": "query",
                            "required": False,
                            "description": "URL the prediction object is POSTed to, signed, "
                            "when the task completes or fails",
                            "schema": {
                                "type": "string",
                                "format": "uri",
                                "maxLength": MAX_WEBHOOK_CHARS,
                            },
                        }
                    ],
                    "requestBody": {"required": True, "content": _json("TrainingRequest")},
                    "responses": {
                        **_answers("the task, status created", 400, 401),
                        "200": {
                            "description": "the task, status created; with enable_sync_mode,"
                            " the ended task, or a sync-mode timeout (the task goes on)",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "anyOf": [
                                            {"$ref": SCHEMAS.format(model="PredictionResponse")},
                                            {"$ref": SCHEMAS.format(model="SyncTimedOutResponse")},
                                        ]
                                    }
                                }
                            },
                        },
                    },
                }
            },
            RESULT_PATH: {
                "get": {
                    "summary": "Get the task's result",
                    "parameters": [id_parameter],
                    "responses": _answers("the task", 401, 404),
                }
            },
            hosted.PREDICTION_PATH: {
                "get": {
                    "summary": "Get the task (the same as its result)",
                    "parameters": [id_parameter],
                    "responses": _answers("the task", 401, 404),
                },
                "delete": {
                    "summary": "Delete the task: a run in progress stops; outputs stay in storage",
                    "parameters": [id_parameter],
                    "responses": _answers("deleted", 401, 404, answer="Deleted"),
                },
            },
            HISTORY_PATH: {
                "post": {
                    "summary": "List this key's tasks, newest first, filtered and paged",
                    "requestBody": {"required": False, "content": _json("HistoryQuery")},
                    "responses": _answers("one page of tasks", 400, 401, answer="History"),
                }
            },
            hosted.DELETE_MANY_PATH: {
                "post": {
                    "summary": "Delete several tasks; ids this key does not know are ignored",
                    "requestBody": {"required": True, "content": _json("DeleteMany")},
                    "responses": _answers("how many were deleted", 400, 401, answer="DeletedCount"),
                }
            },
            hosted.WEBHOOK_SECRET_PATH: {
                "get": {
                    "summary": "This key's webhook secret (made on first use)",
                    "responses": _answers("the secret", 401, answer="WebhookSecret"),
                }
            },
            uploads.TICKETS_PATH: {
                "post": {
                    "summary": "Upload, step one: say what will be sent; answers where to PUT it",
                    "requestBody": {"required": True, "content": _json("UploadRequest")},
                    "responses": _answers(
                        "where to send the bytes", 400, 401, 413, 501, answer="UploadTicket"
                    ),
                }
            },
            uploads.TICKET_PATH: {
                "put": {
                    "summary": "Upload, step two: the raw bytes (no key: the URL allows it)",
                    "parameters": [_path_parameter("token")],
                    "security": [],
                    "requestBody": {
                        "required": True,
                        "content": {"application/octet-stream": {"schema": BINARY}},
                    },
                    "responses": {
                        **_answers("stored", 400, 413, 501, answer="UploadedFile"),
                        "404": {"description": "no such ticket, or it expired"},
                    },
                }
            },
            uploads.BINARY_PATH: {
                "post": {
                    "summary": "Upload a zip dataset or an image in one request",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {"file": BINARY},
                                }
                            }
                        },
                    },
                    "responses": _answers("stored", 400, 401, 413, 501, answer="UploadedFile"),
                }
            },
            uploads.FILE_PATH: {
                "get": {
                    "summary": "Download an upload (only with a key of its namespace)",
                    "parameters": [_path_parameter("token"), _path_parameter("filename")],
                    "responses": {
                        "200": {"description": "the file"},
                        "401": {"description": "missing or unknown key"},
                        "404": {"description": "no such upload for this key"},
                    },
                }
            },
            dataset_check.INSPECT_PATH: {
                "post": {
                    "summary": "Check one of this key's uploads by the trainer's rules before"
                    " training: the images and captions a run would train on, with thumbnails,"
                    " what is skipped and why",
                    "requestBody": {"required": True, "content": _json("InspectRequest")},
                    "responses": _answers(
                        "the report (`error` says when it cannot be trained on)",
                        400,
                        401,
                        404,
                        501,
                        answer="DatasetReport",
                    ),
                }
            },
            runs.RUNS_PATH: {
                "get": {
                    "summary": "This key's runs with their progress, newest first (the web page's"
                    " list)",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": [phase.value for phase in Phase]},
                        }
                    ],
                    "responses": _answers("the runs", 400, 401, answer="Runs"),
                }
            },
            runs.RUN_PATH: {
                "get": {
                    "summary": "One run in full: progress, conditions, snapshots and samples",
                    "parameters": [id_parameter],
                    "responses": _answers("the run", 401, 404, answer="RunDetails"),
                }
            },
            runs.LOSS_PATH: {
                "get": {
                    "summary": "The run's loss curve as stored so far (at each snapshot and at"
                    " the end)",
                    "parameters": [id_parameter],
                    "responses": _answers(
                        "the loss of each stored step", 401, 404, answer="LossCurve"
                    ),
                }
            },
            OUTPUT_PATH: {
                "get": {
                    "summary": "Download one file of a task: an output once completed, a"
                    " snapshot's LoRA or sample image as soon as it is stored",
                    "parameters": [id_parameter, _path_parameter("file")],
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
                **_model_schemas(),
                "ErrorResponse": _envelope({"type": "object"}),
            },
        },
    }

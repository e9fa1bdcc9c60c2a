"""The hosted API's wire format: request bodies to specs, resources to prediction objects."""

import json

import jsonschema
import pytest

from fluxlora_api.prediction import own_outputs
from fluxlora_gateway import hosted
from fluxlora_gateway.openapi import openapi_document

DATA = "https://example.com/portrait.zip"


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_only_the_fields_given_reach_the_spec_so_the_api_server_fills_the_rest():
    assert hosted.parse_request(body(data=DATA)) == ({"data": DATA}, hosted.SubmitOptions())
    spec, _ = hosted.parse_request(
        body(data=DATA, trigger_word=None, steps=1500, learning_rate=0.001, lora_rank=32)
    )
    assert spec == {
        "data": DATA,
        "triggerWord": None,  # null means no trigger word: kept, not dropped
        "steps": 1500,
        "learningRate": 0.001,
        "loraRank": 32,
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body(steps=1000), "data: is required"),
        (body(data=DATA, steps=100), "steps: Input should be greater than or equal to 500"),
        (body(data=DATA, lora_rank=65), "lora_rank: Input should be less than or equal to 64"),
        (body(data=DATA, learning_rate="fast"), "learning_rate: Input should be a valid number"),
        (body(data="ftp://x/y.zip"), "data: String should match pattern"),
        (body(data=DATA, resolution=512), "resolution: unknown field"),
        (body(data=DATA, loraRank=8), "loraRank: unknown field"),
        (body(data=DATA, enable_sync_mode="soon"), "enable_sync_mode: Input should be a valid"),
        (b"{not json", "body: not valid JSON"),
        (b"[1, 2]", "body: must be a JSON object"),
        (b"", "body: must be a JSON object"),
        (b" " * (hosted.MAX_BODY_BYTES + 1), "body: larger than"),
    ],
)
def test_bad_requests_name_the_field(raw, message):
    with pytest.raises(hosted.RequestError) as error:
        hosted.parse_request(raw)
    assert str(error.value).startswith(message)


def test_sync_mode_is_an_answer_option_never_a_training_field():
    spec, options = hosted.parse_request(body(data=DATA, steps=600, enable_sync_mode=True))
    assert spec == {"data": DATA, "steps": 600}
    assert options.enable_sync_mode is True


RUN = "s3://b/p/team-a/prediction-x-u-1"  # the run's own folder under the output prefix


def resource(status: dict | None = None, spec: dict | None = None) -> dict:
    return {
        "metadata": {
            "uid": "u-1",
            "name": "prediction-x",
            "namespace": "team-a",
            "creationTimestamp": "2026-11-24T10:00:00Z",
        },
        "spec": spec or {},
        "status": status or {},
    }


def test_a_new_resource_is_a_created_prediction():
    data = hosted.prediction(resource(), "https://gw.example")
    assert data == {
        "id": "u-1",
        "model": "wavespeed-ai/flux-dev-lora-trainer",
        "outputs": [],
        "urls": {"get": "https://gw.example/api/v3/predictions/u-1/result"},
        "has_nsfw_contents": [],
        "status": "created",
        "created_at": "2026-11-24T10:00:00.000Z",
        "error": "",
        "timings": {"inference": 0},
    }


def test_a_completed_prediction_links_its_outputs_through_the_gateway():
    status = {
        "phase": "completed",
        "createdAt": "2026-11-24T10:00:00.123Z",
        "outputs": [f"{RUN}/lora.safetensors", f"{RUN}/loss.png"],
        "hasNsfwContents": [False, False],
        "timings": {"inference": 81234},
    }
    data = hosted.prediction(resource(status), "https://gw.example")
    assert data["outputs"] == [
        "https://gw.example/api/v3/predictions/u-1/outputs/lora.safetensors",
        "https://gw.example/api/v3/predictions/u-1/outputs/loss.png",
    ]
    assert data["status"] == "completed" and data["timings"] == {"inference": 81234}
    assert data["created_at"] == "2026-11-24T10:00:00.123Z"


@pytest.mark.parametrize(
    "spec", [{}, {"output": "s3://b/p"}], ids=["default-prefix", "spec-output"]
)
def test_only_outputs_in_the_runs_own_folder_are_ever_shown(spec):
    """Defense in depth: whatever reached the status, another run's files are never linked."""
    foreign = [
        "s3://b/p/team-b/other-u-2/lora.safetensors",  # another tenant's run
        f"{RUN}/../../team-b/other-u-2/lora.safetensors",
        f"{RUN}/sub/lora.safetensors",
        "s3://b/p/team-a/prediction-x-u-1-evil/lora.safetensors",
    ]
    status = {"phase": "completed", "outputs": [f"{RUN}/lora.safetensors", *foreign]}
    assert own_outputs(resource(status, spec)) == [f"{RUN}/lora.safetensors"]
    elsewhere = resource(status, {"output": "s3://other-bucket/p"})  # not where this run wrote
    assert own_outputs(elsewhere) == []


def test_outputs_are_hidden_until_completed_and_errors_show():
    failed = hosted.prediction(
        resource({"phase": "failed", "error": "portrait.zip: not a zip", "outputs": ["s3://b/x"]}),
        "https://gw",
    )
    assert (failed["status"], failed["outputs"], failed["error"]) == (
        "failed",
        [],
        "portrait.zip: not a zip",
    )


def test_spec_defaults_cover_only_what_callers_cannot_set():
    assert hosted.check_spec_defaults({"baseModel": "/models/flux", "resolution": 512}) == {
        "baseModel": "/models/flux",
        "resolution": 512,
    }
    with pytest.raises(ValueError, match="steps is the caller's to choose"):
        hosted.check_spec_defaults({"steps": 600})
    with pytest.raises(ValueError, match="resolution"):
        hosted.check_spec_defaults({"resolution": 100})


def test_every_prediction_matches_the_published_openapi_schema():
    """The answer and /openapi.json come from one model: a new field or status cannot reach
    callers without reaching the document."""
    document = openapi_document("https://gw.example")
    schema = {
        "$ref": "#/components/schemas/PredictionResponse",
        "components": document["components"],
    }
    validator = jsonschema.Draft202012Validator(schema)
    completed = {
        "phase": "completed",
        "outputs": [f"{RUN}/lora.safetensors"],
        "timings": {"inference": 5},
    }
    for status in ({}, {"phase": "processing"}, completed, {"phase": "failed", "error": "boom"}):
        data = hosted.prediction(resource(status), "https://gw.example")
        validator.validate(hosted.envelope(200, "success", data))
    statuses = document["components"]["schemas"]["Phase"]["enum"]
    assert statuses == ["created", "processing", "completed", "failed"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(hosted.envelope(200, "success", {**data, "status": "running"}))


def test_a_sync_mode_timeout_answers_as_the_hosted_platform_does():
    document = openapi_document("https://gw.example")
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/SyncTimedOutResponse", "components": document["components"]}
    )
    data = hosted.sync_timed_out(resource({"phase": "processing"}), "https://gw.example", 300)
    validator.validate(hosted.envelope(200, "success", data))
    assert data["code"] == 5004 and data["status"] == "processing" and data["id"] == "u-1"
    assert data["error"].startswith("Sync mode timed out after 300 s")
    assert data["urls"]["get"] in data["error"]


def test_the_openapi_document_describes_every_endpoint_the_gateway_serves():
    from fluxlora_gateway.app import Gateway
    from fluxlora_gateway.routes import build_app

    app = build_app(Gateway(kube=None, keys=None))  # type: ignore[arg-type]  # routes only
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
    } - {("get", "/openapi.json"), ("get", "/healthz")}
    served -= {("get", "/"), ("get", "/ui/"), ("get", "/ui/static")}  # the web page's files
    document = openapi_document("https://gw.example")
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert served == described


@pytest.mark.parametrize(
    ("schema", "answer"),
    [
        ("DeletedResponse", hosted.Deleted(id="u-1").model_dump()),
        ("DeletedCountResponse", hosted.DeletedCount(deleted_count=2).model_dump()),
    ],
)
def test_delete_answers_match_their_published_schemas(schema, answer):
    document = openapi_document("https://gw.example")
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    )
    validator.validate(hosted.envelope(200, "success", answer))
    assert answer.get("status", "deleted") == "deleted"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{}", "ids: is required"),
        (b'{"ids": "abc"}', "ids: Input should be a valid list"),
        (b'{"ids": [], "extra": 1}', "extra: Extra inputs are not permitted"),
        (b"[", "body: not valid JSON"),
        (json.dumps({"ids": ["x"] * 101}).encode(), "ids: List should have at most 100 items"),
    ],
)
def test_a_bad_batch_delete_names_the_field(raw, message):
    with pytest.raises(hosted.RequestError, match=message):
        hosted.parse_body(hosted.DeleteMany, raw)

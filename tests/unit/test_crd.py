"""The CRD is generated from the models, committed, and checked the way the API server reads it."""

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fluxlora_api import resource
from fluxlora_api.api_docs import API_DOCS_FILE, render_api_docs
from fluxlora_api.crd import CRD_FILE, build_crd, render_crd

ROOT = Path(__file__).resolve().parents[2]


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def test_the_committed_crd_is_what_the_models_generate():
    committed = (ROOT / "crds" / CRD_FILE).read_text()
    assert committed == render_crd(), "run `make crds` and commit the result"


def test_the_schema_is_structural():
    for path, node in walk(schema()):
        for key in ("$ref", "anyOf", "allOf", "oneOf", "title", "$defs", "propertyNames"):
            assert key not in node, f"{path} has {key}"
        assert node.get("additionalProperties") is not False, path
        if "properties" in node:
            assert node.get("type") == "object", path


def test_every_spec_and_status_field_is_documented_for_kubectl_explain():
    for part in ("spec", "status"):
        for path, node in walk(schema()["properties"][part]):
            for name, prop in node.get("properties", {}).items():
                assert prop.get("description"), f"{part}{path}.{name} has no description"


def test_the_hosted_defaults_are_applied_by_the_api_server():
    spec = schema()["properties"]["spec"]["properties"]
    assert spec["triggerWord"]["default"] == "p3r5on"
    assert spec["triggerWord"]["nullable"] is True  # explicit null = no trigger word
    assert spec["steps"]["default"] == 1000
    assert "default" not in spec["learningRate"]  # unset: the optimizer's own (0.0004 for AdamW)
    assert spec["loraRank"]["default"] == 16
    assert (spec["steps"]["minimum"], spec["steps"]["maximum"]) == (500, 4000)
    assert (spec["loraRank"]["minimum"], spec["loraRank"]["maximum"]) == (1, 64)
    assert (spec["learningRate"]["minimum"], spec["learningRate"]["maximum"]) == (0, 1)
    assert spec["learningRate"]["exclusiveMinimum"] is True  # a learning rate of 0 trains nothing


def test_every_spec_field_but_suspend_is_immutable_with_a_message_that_says_what_to_do():
    spec = schema()["properties"]["spec"]
    (presence,) = [
        rule
        for rule in spec["x-kubernetes-validations"]
        if "create a new LoRATrainingJob" in rule["message"]
    ]
    for name, field in spec["properties"].items():
        rules = [r["rule"] for r in field.get("x-kubernetes-validations", [])]
        mutable = name == "suspend"
        assert ("self == oldSelf" in rules) is not mutable, name
        assert (f"has(self.{name}) == has(oldSelf.{name})" in presence["rule"]) is not mutable


def test_conditions_are_a_map_keyed_by_type():
    conditions = schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


# --- the schema as a validator (a proxy for the API server until tests run against one) ------


def as_json_schema(node: Any) -> Any:
    """OpenAPI v3.0 -> JSON Schema draft 4 (which shares its boolean exclusive bounds)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if out.pop("nullable", False):
        out["type"] = [out["type"], "null"]
    return out


def validate(body: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(as_json_schema(schema())).validate(body)


def example_resources() -> list[Path]:
    return sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", example_resources(), ids=lambda p: p.name)
def test_the_examples_are_valid_resources(path):
    for document in yaml.safe_load_all(path.read_text()):
        if document and document.get("kind") == resource.KIND:
            validate(document)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"steps": 1000}, "data"),
        ({"data": "https://x/y.zip", "steps": 100}, "steps"),
        ({"data": "https://x/y.zip", "loraRank": 128}, "loraRank"),
        ({"data": "https://x/y.zip", "learningRate": 2}, "learningRate"),
        ({"data": "https://x/y.zip", "steps": "many"}, "steps"),
        ({"data": "ftp://x/y.zip"}, "data"),
    ],
)
def test_the_schema_rejects_what_the_models_reject(spec, field):
    body = {"apiVersion": resource.API_VERSION, "kind": resource.KIND, "spec": spec}
    with pytest.raises(jsonschema.ValidationError) as error:
        validate(body)
    assert field in str(error.value.path) + error.value.message


def test_the_generated_file_is_valid_yaml_with_one_document():
    assert list(yaml.safe_load_all(render_crd())) == [build_crd()]


def test_the_helm_chart_ships_the_same_crd():
    chart_crd = ROOT / "charts" / "flux-lora-operator" / "crds" / CRD_FILE
    assert chart_crd.read_text() == (ROOT / "crds" / CRD_FILE).read_text(), "run `make crds`"


def test_the_committed_api_reference_is_what_the_models_generate():
    committed = (ROOT / "docs" / API_DOCS_FILE).read_text()
    assert committed == render_api_docs(), "run `make crds` and commit the result"
    for field in schema()["properties"]["spec"]["properties"]:
        assert f"| `{field}` |" in committed

"""Builds the CustomResourceDefinition from the pydantic models (written by `make crds`).

Kubernetes wants a *structural* OpenAPI v3.0 schema: no $ref, no anyOf over types, `nullable`
instead of a null type, boolean exclusive bounds. `structural()` turns pydantic's JSON Schema
into that, so every range, default and description is written once, in the models.
"""

from typing import Any

import yaml
from pydantic import BaseModel

from fluxlora_api import resource
from fluxlora_api.spec import MUTABLE_SPEC_FIELDS, LoRATrainingJobSpec
from fluxlora_api.status import LoRATrainingJobStatus

CRD_FILE = f"{resource.CRD_NAME}.yaml"
IMMUTABLE_SPEC_MESSAGE = (
    "spec is immutable but for suspend: create a new LoRATrainingJob (a new name) to train "
    "with other settings"
)
NAME_LENGTH_MESSAGE = (
    f"metadata.name must be at most {resource.MAX_NAME_LENGTH} characters "
    f"(the trainer Job is named <name>{resource.JOB_NAME_SUFFIX}, at most 63)"
)

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Steps", "type": "integer", "jsonPath": ".spec.steps"},
    {"name": "Progress", "type": "integer", "jsonPath": ".status.progress.step"},
    {"name": "Rank", "type": "integer", "jsonPath": ".spec.loraRank"},
    {"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspend"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    # The step of the newest snapshot (kubectl get -o wide), as `kubectl describe` lists all.
    {
        "name": "Snapshot",
        "type": "integer",
        "jsonPath": ".status.snapshots[-1:].step",
        "priority": 1,
    },
    {"name": "Error", "type": "string", "jsonPath": ".status.error", "priority": 1},
]

_DROPPED_KEYS = {"title", "$defs"}


def describe(text: str) -> str:
    """Docstrings span lines; descriptions are one paragraph."""
    return " ".join(text.split())


def structural(node: Any, defs: dict[str, Any]) -> Any:
    """Convert one pydantic JSON Schema node into a structural OpenAPI v3.0 schema node."""
    if isinstance(node, list):
        return [structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node

    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        return structural({**target, **node}, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        return structural({**node.pop("allOf")[0], **node}, defs)
    if "anyOf" in node:
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express anyOf {variants} structurally")
        # Only a field whose default is a value gives null a meaning of its own
        # (triggerWord: null = no trigger word); elsewhere null just means unset and is pruned.
        if node.get("default") is not None:
            node["nullable"] = True
        return structural({**variants[0], **node}, defs)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "default" and (value is None or value == [] or value == {}):
            continue
        # extra="forbid" becomes additionalProperties: false, which structural schemas reject;
        # the API server prunes (and kubectl's strict field validation rejects) unknown fields.
        if key == "additionalProperties" and value is False:
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "description":
            out[key] = describe(value)
        elif key == "properties":
            out[key] = {name: structural(prop, defs) for name, prop in value.items()}
        else:
            out[key] = structural(value, defs)
    return _ordered(out)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """type and description first, then the rest by name: a stable, readable file."""
    first = [key for key in ("type", "description") if key in node]
    return {key: node[key] for key in first + sorted(set(node) - set(first))}


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    converted: dict[str, Any] = structural(schema, schema.get("$defs", {}))
    return converted


def immutability_rules(spec: dict[str, Any]) -> list[dict[str, str]]:
    """Every spec field but MUTABLE_SPEC_FIELDS stays as created: each field's own transition
    rule (CEL runs it when the field is there before and after), and one rule that no field
    comes or goes. Same message for all."""
    fields = [name for name in spec["properties"] if name not in MUTABLE_SPEC_FIELDS]
    for name in fields:
        rules = spec["properties"][name].setdefault("x-kubernetes-validations", [])
        rules.append({"rule": "self == oldSelf", "message": IMMUTABLE_SPEC_MESSAGE})
    presence = " && ".join(f"has(self.{name}) == has(oldSelf.{name})" for name in fields)
    return [{"rule": presence, "message": IMMUTABLE_SPEC_MESSAGE}]


def build_crd() -> dict[str, Any]:
    spec = model_schema(LoRATrainingJobSpec)
    spec["x-kubernetes-validations"] = [
        *spec.get("x-kubernetes-validations", []),  # the models' own cross-field rules
        *immutability_rules(spec),
    ]
    status = model_schema(LoRATrainingJobStatus)
    root = {
        "type": "object",
        "description": (
            "A LoRATrainingJob trains one FLUX.1-dev LoRA from a zip of images: the Kubernetes "
            "form of the hosted flux-dev-lora-trainer API."
        ),
        "properties": {
            "apiVersion": {"type": "string", "description": "API version: fluxlora.dev/v1alpha1."},
            "kind": {"type": "string", "description": "Kind: LoRATrainingJob."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {resource.MAX_NAME_LENGTH}",
                "message": NAME_LENGTH_MESSAGE,
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": resource.CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "flux-lora-operator"},
        },
        "spec": {
            "group": resource.GROUP,
            "names": {
                "kind": resource.KIND,
                "listKind": f"{resource.KIND}List",
                "plural": resource.PLURAL,
                "singular": resource.SINGULAR,
                "shortNames": list(resource.SHORT_NAMES),
                "categories": list(resource.CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": resource.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated by `make crds` from operator/fluxlora_api; do not edit by hand.\n"
    return header + str(yaml.safe_dump(build_crd(), sort_keys=False, width=100))

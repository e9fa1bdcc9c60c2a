"""The LoRATrainingJob as the operator sees it: identity, owner reference and parsed spec."""

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from fluxlora_api import resource
from fluxlora_api.spec import LoRATrainingJobSpec


class InvalidSpec(ValueError):
    """The spec cannot be trained (only possible when the API server's schema was bypassed)."""


@dataclass(frozen=True)
class TrainingJobRef:
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> "TrainingJobRef":
        meta = body["metadata"]
        return cls(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])

    def owner_reference(self) -> dict[str, Any]:
        """Makes children garbage-collected with the resource and `kubectl get` show the owner."""
        return {
            "apiVersion": resource.API_VERSION,
            "kind": resource.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def owns(self, obj: dict[str, Any]) -> bool:
        """Whether this resource is `obj`'s controller. A mere ownerReference (anyone may add
        one) is not enough: only the controller reference, with this resource's uid."""
        owners = obj.get("metadata", {}).get("ownerReferences") or []
        return any(
            owner.get("controller") is True
            and owner.get("uid") == self.uid
            and owner.get("kind") == resource.KIND
            and owner.get("apiVersion") == resource.API_VERSION
            for owner in owners
        )


def parse_spec(spec: dict[str, Any]) -> LoRATrainingJobSpec:
    """The typed spec; errors name the field (spec.steps: ...)."""
    try:
        return LoRATrainingJobSpec.model_validate(dict(spec))
    except ValidationError as error:
        problems = [
            f"spec.{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        ]
        raise InvalidSpec("; ".join(problems)) from None

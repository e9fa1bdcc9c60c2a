"""metav1.Condition bookkeeping: one condition per type, lastTransitionTime kept while the
status stays the same (Kubernetes API conventions)."""

from dataclasses import dataclass
from typing import Any

from fluxlora_api.status import ConditionType, Reason, condition


@dataclass(frozen=True)
class ConditionChange:
    type: ConditionType
    status: str
    # The operator's own Reason, or one the Job controller, scheduler or kubelet gave.
    reason: Reason | str
    message: str = ""
    # Posted as a Warning event (not Normal) when the condition changes to this.
    warning: bool = False


def find_condition(conditions: list[dict[str, Any]], type_: ConditionType) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def set_condition(
    conditions: list[dict[str, Any]], change: ConditionChange, now: str, generation: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """The conditions with `change` applied in place, and whether it changed anything."""
    existing = find_condition(conditions, change.type)
    # lastTransitionTime changes only with the status.
    transition = now
    if existing is not None and existing.get("status") == change.status:
        transition = existing["lastTransitionTime"]
    updated = condition(
        change.type, change.status, change.reason, change.message, transition, generation
    )
    if existing == updated:
        return conditions, False
    if existing is None:
        return [*conditions, updated], True
    return [updated if c is existing else c for c in conditions], True

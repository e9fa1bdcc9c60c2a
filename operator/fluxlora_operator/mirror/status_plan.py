"""Turns an Observation into the status patch and the Events that record it (pure).

Terminal phases are sticky and processing never falls back to created: a preempted run that
waits for a new GPU is still processing, as in the hosted API."""

from dataclasses import dataclass, field
from typing import Any

from fluxlora_api.status import Phase, Reason, Timings, phase_of, status_fields
from fluxlora_operator.events import Event
from fluxlora_operator.mirror.conditions import ConditionChange, set_condition
from fluxlora_operator.mirror.observe import Observation


@dataclass(frozen=True)
class StatusUpdate:
    patch: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    delete_job: bool = False


def apply_conditions(
    status: dict[str, Any], changes: tuple[ConditionChange, ...], now: str, generation: int | None
) -> tuple[list[dict[str, Any]] | None, list[Event]]:
    """The new conditions list (None when unchanged) and an Event per changed condition."""
    original = list(status.get("conditions") or [])
    conditions, events = original, []
    for change in changes:
        conditions, changed = set_condition(conditions, change, now, generation)
        if changed:
            kind = "Warning" if change.warning else "Normal"
            events.append(Event(kind, change.reason, change.message or change.type))
    return (conditions if conditions != original else None), events


def plan_status_update(
    status: dict[str, Any], observation: Observation, now: str, generation: int | None
) -> StatusUpdate:
    status = status or {}
    current = phase_of(status)
    if current is not None and current.terminal:
        return StatusUpdate()

    phase = observation.phase
    if phase == Phase.CREATED and current == Phase.PROCESSING:
        phase = Phase.PROCESSING

    fields: dict[str, Any] = {}  # snake_case, checked by the status model
    if phase != current:
        fields["phase"] = phase
    conditions, events = apply_conditions(status, observation.conditions, now, generation)
    if observation.rejected_outputs and phase != current:
        shown = ", ".join(repr(item[:200]) for item in observation.rejected_outputs[:5])
        events.append(
            Event(
                "Warning",
                Reason.OUTPUT_REJECTED,
                f"the trainer reported output(s) outside this run's own folder, dropped: {shown}",
            )
        )
    if conditions is not None:
        fields["conditions"] = conditions
    if observation.start_time and not status.get("startTime"):
        fields["start_time"] = observation.start_time
    # Pods of earlier attempts may be gone (evicted pods are deleted), so a new pod name also
    # counts as an attempt.
    attempts = status.get("attempts") or 0
    previous_pod = status.get("trainerPod")
    if observation.pod_name and observation.pod_name != previous_pod:
        fields["trainer_pod"] = observation.pod_name
        if previous_pod:
            attempts += 1
    attempts = max(attempts, observation.attempts)
    if attempts != (status.get("attempts") or 0):
        fields["attempts"] = attempts
    if generation is not None and status.get("observedGeneration") != generation:
        fields["observed_generation"] = generation

    if phase == Phase.COMPLETED:
        result = observation.result
        outputs = list(result.outputs) if result else []
        nsfw = (result.has_nsfw_contents if result else None) or [False] * len(outputs)
        fields.update(
            outputs=outputs,
            has_nsfw_contents=nsfw,
            timings=Timings(inference=result.timings.inference if result else 0),
            error="",
        )
    if phase == Phase.FAILED:
        fields.update(error=observation.error, outputs=[], has_nsfw_contents=[])
    if phase.terminal:
        fields["completion_time"] = observation.completion_time or now

    patch = status_fields(**fields) if fields else {}
    return StatusUpdate(patch=patch, events=tuple(events), delete_job=observation.delete_job)

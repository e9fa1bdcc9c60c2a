"""The trainer's result always fits the termination message Kubernetes keeps, as JSON."""

from fluxlora_api.contract import (
    TERMINATION_MESSAGE_LIMIT,
    TrainingResult,
    parse_termination_message,
)
from fluxlora_trainer.cli import termination_message


def test_a_long_error_is_shortened_to_fit_and_still_parses():
    error = "data: " + "caf\u00e9 \U0001f600 " * 2000
    message = termination_message(TrainingResult(error=error))
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = parse_termination_message(message)
    assert parsed is not None and parsed.error.startswith("data: caf\u00e9")
    assert parsed.error.endswith("\u2026")


def test_a_result_that_fits_is_unchanged():
    result = TrainingResult(outputs=["lora.safetensors", "config.json"], error="")
    assert termination_message(result) == result.to_termination_message()

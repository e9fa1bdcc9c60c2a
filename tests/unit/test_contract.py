"""The trainer's result travels in the termination message; the operator reads it back."""

from fluxlora_api.contract import (
    TERMINATION_MESSAGE_LIMIT,
    ExitCode,
    TrainingResult,
    parse_termination_message,
)
from fluxlora_api.status import Timings


def test_a_result_survives_the_termination_message_round_trip():
    result = TrainingResult(
        outputs=["s3://out/ns/a/lora.safetensors", "s3://out/ns/a/lora_comfyui.safetensors"],
        timings=Timings(inference=1234567),
    )
    assert parse_termination_message(result.to_termination_message()) == result


def test_a_typical_result_fits_the_kubernetes_message_limit():
    prefix = "s3://a-long-bucket-name/fluxlora/some-namespace/portrait-of-someone-" + "x" * 36
    names = ["lora.safetensors", "lora_comfyui.safetensors", "config.json", "loss.csv"]
    names += ["loss.png"] + [f"sample_{i}.png" for i in range(8)]
    result = TrainingResult(outputs=[f"{prefix}/{name}" for name in names])
    assert len(result.to_termination_message().encode()) < TERMINATION_MESSAGE_LIMIT


def test_a_log_tail_is_not_mistaken_for_a_result():
    assert parse_termination_message("Traceback (most recent call last):\n  boom") is None
    assert parse_termination_message("") is None
    assert parse_termination_message(None) is None


def test_a_newer_trainer_may_report_more_fields():
    parsed = parse_termination_message('{"outputs": ["s3://b/k"], "gpuName": "H100"}')
    assert parsed is not None and parsed.outputs == ["s3://b/k"]


def test_bad_input_has_its_own_exit_code():
    assert ExitCode.BAD_INPUT not in (0, 1, 137, 143)

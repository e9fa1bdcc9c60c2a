"""The trainer's result travels in the termination message; the operator reads it back."""

from fluxlora_api.contract import (
    TERMINATION_MESSAGE_LIMIT,
    TrainingResult,
    parse_termination_message,
)
from fluxlora_api.outputs import resolve_output, run_folder, snapshot_samples, snapshot_steps
from fluxlora_api.spec import LoRATrainingJobSpec
from fluxlora_api.status import Timings


def test_a_result_survives_the_termination_message_round_trip():
    result = TrainingResult(
        outputs=["s3://out/ns/a/lora.safetensors", "s3://out/ns/a/lora_comfyui.safetensors"],
        timings=Timings(inference=1234567),
    )
    assert parse_termination_message(result.to_termination_message()) == result


def test_every_output_kind_under_the_longest_prefix_reaches_the_status():
    """Names, not URLs, travel in the message: its size does not grow with the prefix."""
    longest = "s3://b/" + "p" * (1024 - len("s3://b/"))  # spec.output's maxLength
    spec = LoRATrainingJobSpec(data="https://example.com/a.zip", output=longest)
    folder = run_folder(spec.output, "n" * 63, "r" * 57, "u" * 36)
    names = ["lora.safetensors", "lora_comfyui.safetensors", "config.json", "loss.csv"]
    names += ["loss.png"] + [f"sample_{i}.png" for i in range(8)]
    message = TrainingResult(outputs=names).to_termination_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = parse_termination_message(message)
    assert [resolve_output(folder, name) for name in parsed.outputs] == [
        f"{folder}/{name}" for name in names
    ]


def test_a_long_error_is_shortened_so_the_message_stays_valid_json():
    error = "data: bad.zip: " + "é\n" * 5000 + "the end"
    message = TrainingResult(error=error).to_termination_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = parse_termination_message(message)
    assert parsed.error.startswith("data: bad.zip") and parsed.error.endswith("the end")


def test_a_log_tail_is_not_mistaken_for_a_result():
    assert parse_termination_message("Traceback (most recent call last):\n  boom") is None
    assert parse_termination_message("") is None
    assert parse_termination_message(None) is None


def test_a_newer_trainer_may_report_more_fields():
    parsed = parse_termination_message('{"outputs": ["s3://b/k"], "gpuName": "H100"}')
    assert parsed is not None and parsed.outputs == ["s3://b/k"]


def test_snapshots_fall_on_every_step_either_interval_asks_for_but_the_last():
    assert snapshot_steps(1000, 250, 400) == [250, 400, 500, 750, 800]
    assert snapshot_steps(1000, None, None) == []
    assert snapshot_steps(500, 250) == [250]  # step 500 is the final LoRA itself
    assert snapshot_samples(400, 2) == ["sample_0-step-000400.png", "sample_1-step-000400.png"]

"""`fluxlora-trainer train` on the tiny FLUX model: from a zip in S3 to LoRA files that load in
diffusers and change what the pipeline draws; bad input ends with its own exit code; a killed
run resumes from its checkpoint."""

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from fluxlora_api.contract import CONFIG_ENV, ExitCode, TrainingConfig
from fluxlora_localcluster.datasets import make_zip
from fluxlora_trainer.cli import main
from tests.trainer.pipelines import render

pytestmark = pytest.mark.timeout(300)


def config(tiny_model: Path, data: str, output: str, **fields) -> TrainingConfig:
    values = {
        "data": data,
        "output": output,
        "baseModel": str(tiny_model),
        "steps": 500,
        "resolution": 256,
        "learningRate": 0.001,
        "seed": 7,
        "checkpointEverySteps": 0,
        **fields,
    }
    return TrainingConfig.model_validate(values)


def write(cfg: TrainingConfig, path: Path) -> Path:
    path.write_text(cfg.model_dump_json(by_alias=True))
    return path


def first_and_last_losses(csv: Path, window: int = 50) -> tuple[float, float]:
    """Mean loss of the first and of the last `window` steps of a loss.csv."""
    losses = [float(row.split(",")[1]) for row in csv.read_text().splitlines()[1:]]
    return sum(losses[:window]) / window, sum(losses[-window:]) / window


def train(cfg: TrainingConfig, folder: Path) -> tuple[int, dict]:
    """`fluxlora-trainer train --config ...`: the exit code and the result it reported."""
    result_file = folder / "result.json"
    code = main(
        [
            "train",
            "--config",
            str(write(cfg, folder / "config.json")),
            "--result-file",
            str(result_file),
        ]
    )
    return code, json.loads(result_file.read_text())


def test_a_run_from_s3_to_s3_produces_every_output(
    s3_env, s3_dataset, tiny_model, tmp_path, capsys
):
    output = f"s3://{s3_dataset}/loras/team-a/portrait-uid"
    cfg = config(
        tiny_model,
        f"s3://{s3_dataset}/data/portrait.zip",
        output,
        samplePrompts=["a photo of p3r5on"],
    )
    code, result = train(cfg, tmp_path)
    assert code == ExitCode.SUCCESS
    # File names under the output prefix, which the operator joins with the prefix it chose.
    names = [
        "lora.safetensors",
        "lora_comfyui.safetensors",
        "config.json",
        "loss.csv",
        "loss.png",
        "sample_0.png",
    ]
    assert result["outputs"] == names
    assert result["timings"]["inference"] > 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    keys = [
        o["Key"]
        for o in s3_env.client().list_objects_v2(Bucket=s3_dataset, Prefix="loras/")["Contents"]
    ]
    # every named file is there, and nothing else (no checkpoints left)
    assert sorted(keys) == sorted(f"loras/team-a/portrait-uid/{name}" for name in names)


def test_the_lora_loads_in_diffusers_and_changes_the_image(tiny_model, tmp_path, http_dataset):
    from diffusers import FluxPipeline

    out = tmp_path / "out"
    # A presigned URL with a password too: neither may reach the published config.json.
    signed = http_dataset.replace("http://", "http://user:pass@") + "?X-Amz-Signature=secret"
    cfg = config(
        tiny_model,
        signed,
        str(out),
        loraTargets=["attention", "context", "feed-forward", "single-blocks", "modulation"],
        emaDecay=0.99,  # the moving average is what is saved, and it must work as well
    )
    code, result = train(cfg, tmp_path)
    assert code == 0
    assert result["outputs"][0] == "lora.safetensors"
    published = (out / "config.json").read_text()
    assert json.loads(published)["data"] == http_dataset
    assert "secret" not in published and "pass" not in published

    with safe_open(str(out / "lora.safetensors"), "pt") as lora:
        metadata = lora.metadata()
        assert all(key.startswith("transformer.") for key in lora.keys())  # noqa: SIM118
    assert metadata["fluxlora.trigger_word"] == "p3r5on"
    assert metadata["fluxlora.rank"] == "16" and metadata["fluxlora.steps"] == "500"
    assert metadata["fluxlora.base_model"] == str(tiny_model)
    assert metadata["fluxlora.ema_decay"] == "0.99"

    pipeline = FluxPipeline.from_pretrained(tiny_model)

    before = render(pipeline, "a photo of p3r5on")
    pipeline.load_lora_weights(str(out / "lora.safetensors"))
    after = render(pipeline, "a photo of p3r5on")
    assert abs(after - before).mean() > 1e-4

    rows = (out / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,smoothed_loss,elapsed_seconds" and len(rows) == 501
    first, last = first_and_last_losses(out / "loss.csv")
    assert last < first  # it learned something


# The trainer's command, saying at its end which of the training libraries it loaded.
TRAIN_SAYING_LOADED = """
import sys
from fluxlora_trainer.cli import main
code = main(sys.argv[1:])
print(sorted({"diffusers", "peft", "transformers"} & set(sys.modules)))
sys.exit(code)
"""


def test_an_unusable_dataset_ends_with_the_bad_input_code_before_the_libraries_load(
    tiny_model, tmp_path, http_server
):
    """A bad dataset is refused in seconds: it is checked before diffusers, peft and
    transformers load (seconds of a pod's time, more on a GPU node)."""
    (http_server.root / "empty.zip").write_bytes(
        make_zip(tmp_path / "e.zip", {"a.md": "no images"}).read_bytes()
    )
    cfg = config(tiny_model, f"{http_server.url}/empty.zip", str(tmp_path / "out"))
    result_file = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_SAYING_LOADED, "train",
         "--config", str(write(cfg, tmp_path / "config.json")), "--result-file", str(result_file)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    assert "has no usable image" in json.loads(result_file.read_text())["error"]
    assert done.stdout.splitlines()[-1] == "[]", done.stdout


def test_a_bad_config_is_bad_input_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv(
        CONFIG_ENV, json.dumps({"data": "https://x/y.zip", "output": "/o", "steps": 5})
    )
    result_file = tmp_path / "r"
    assert main(["train", "--result-file", str(result_file)]) == ExitCode.BAD_INPUT
    assert json.loads(result_file.read_text())["error"].startswith("config: steps:")


def test_a_killed_run_resumes_from_its_checkpoint(tiny_model, tmp_path, http_dataset):
    out = tmp_path / "out"
    cfg = write(
        config(tiny_model, http_dataset, str(out), checkpointEverySteps=100), tmp_path / "c.json"
    )
    command = [
        str(Path(sys.executable).parent / "fluxlora-trainer"),
        "train",
        "--config",
        str(cfg),
        "--result-file",
        str(tmp_path / "r"),
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("step-*.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)  # no goodbye, as when a node dies
    first.communicate()
    saved = sorted(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.pt"))
    assert saved, "no checkpoint was written"

    second = subprocess.run(
        command, capture_output=True, text=True, timeout=240, env={**os.environ}
    )
    assert second.returncode == 0, second.stdout + second.stderr
    resumed_at = int(second.stderr.split("resuming from the checkpoint at step ")[1].split()[0])
    assert resumed_at >= saved[-1]
    steps = [int(row.split(",")[0]) for row in (out / "loss.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 501))  # the curve is whole: the first run's part came along
    assert not list((out / "checkpoints").glob("*.pt"))


def test_a_sigterm_mid_training_checkpoints_that_step_and_the_rerun_goes_on_from_the_next(
    tiny_model, tmp_path, http_dataset
):
    out = tmp_path / "out"
    # No periodic checkpoints: the only one is the one the SIGTERM makes.
    cfg = write(config(tiny_model, http_dataset, str(out), checkpointEverySteps=0),
                tmp_path / "c.json")  # fmt: skip
    command = [str(Path(sys.executable).parent / "fluxlora-trainer"), "train",
               "--config", str(cfg), "--result-file", str(tmp_path / "r")]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in first.stdout:  # the first progress line: training has begun
        if "] step " in line:
            break
    first.send_signal(signal.SIGTERM)  # as the kubelet does when the pod is evicted
    log = first.communicate(timeout=120)[0]
    assert first.returncode == ExitCode.RETRYABLE, log
    stopped_at = int(log.split("SIGTERM after step ")[1].split(",")[0])
    saved = [int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.pt")]
    assert saved == [stopped_at] and 0 < stopped_at < 500

    second = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming from the checkpoint at step {stopped_at}" in second.stderr
    steps = [int(row.split(",")[0]) for row in (out / "loss.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 501))  # no step lost, none repeated


def test_snapshots_are_saved_at_the_asked_steps_in_both_formats_and_each_loads(
    tiny_model, tmp_path, http_dataset
):
    from diffusers import FluxPipeline
    from safetensors.torch import load_file

    out = tmp_path / "out"
    code, result = train(config(tiny_model, http_dataset, str(out), saveEverySteps=200), tmp_path)
    assert code == 0
    assert sorted(path.name for path in out.glob("*-step-*")) == [
        "lora-step-000200.safetensors", "lora-step-000400.safetensors",
        "lora_comfyui-step-000200.safetensors", "lora_comfyui-step-000400.safetensors",
    ]  # fmt: skip
    # The trainer's result names its own files only: the operator adds the snapshots' names.
    assert result["outputs"][0] == "lora.safetensors"
    assert not [name for name in result["outputs"] if "-step-" in name]
    loras = [load_file(str(out / f"lora-step-{step:06d}.safetensors")) for step in (200, 400)]
    loras.append(load_file(str(out / "lora.safetensors")))
    assert loras[0].keys() == loras[1].keys() == loras[2].keys()
    for earlier, later in itertools.pairwise(loras):  # the LoRA moved between saves
        assert any(not torch.equal(earlier[key], later[key]) for key in earlier)
    kohya = load_file(str(out / "lora_comfyui-step-000200.safetensors"))
    assert kohya.keys() == load_file(str(out / "lora_comfyui.safetensors")).keys()

    pipeline = FluxPipeline.from_pretrained(tiny_model)
    before = render(pipeline, "a photo of p3r5on")
    pipeline.load_lora_weights(str(out / "lora-step-000200.safetensors"))
    assert abs(render(pipeline, "a photo of p3r5on") - before).mean() > 1e-4


def test_samples_are_rendered_while_training_from_cached_prompts_and_compare_across_steps(
    tiny_model, tmp_path, http_dataset
):
    import numpy as np
    from PIL import Image

    from fluxlora_trainer.run import run_training

    out = tmp_path / "out"
    prompts = ["a photo of p3r5on", "p3r5on on a beach"]
    cfg = config(tiny_model, http_dataset, str(out), samplePrompts=prompts,
                 sampleEverySteps=150, saveEverySteps=300)  # fmt: skip
    reports, stored = [], []
    result = run_training(
        cfg, tmp_path / "work", reports.append,
        on_snapshot=lambda step, loss, samples: stored.append((step, samples)),
    )  # fmt: skip
    # A snapshot at every step either interval asks for: LoRA files at 300 only.
    assert stored == [(150, 2), (300, 2), (450, 2)]
    assert sorted(path.name for path in out.glob("lora*-step-*")) == [
        "lora-step-000300.safetensors", "lora_comfyui-step-000300.safetensors"
    ]  # fmt: skip
    images = {
        step: [
            np.asarray(Image.open(out / f"sample_{i}-step-{step:06d}.png"), float) for i in (0, 1)
        ]
        for step in (150, 300, 450)
    }
    assert images[150][0].shape == (256, 256, 3)
    # The same prompt and seed at two steps: only the LoRA changed between them.
    assert abs(images[150][0] - images[450][0]).mean() > 0.5
    assert abs(images[150][0] - images[150][1]).mean() > 0.5  # two prompts, two images
    # The final samples are the trainer's outputs, as without sampleEverySteps.
    assert [name for name in result.outputs if name.startswith("sample")] == [
        "sample_0.png", "sample_1.png"
    ]  # fmt: skip
    # Sampling is not training time: counted apart, and the ETA leaves it out.
    assert reports[-1].step == 500 and reports[-1].sampling_seconds > 0
    # The two steps around the samples at 150 took less training time than those samples took
    # to render (~50 steps' time), whatever else the machine was doing.
    at = {r.step: r for r in reports}
    sampled_at_150 = at[151].sampling_seconds - at[149].sampling_seconds
    assert sampled_at_150 > 0
    assert at[151].elapsed_seconds - at[149].elapsed_seconds < sampled_at_150 / 2


def test_the_same_seed_trains_the_same_lora(tiny_model, tmp_path, http_dataset):
    from safetensors.torch import load_file

    loras = []
    for run in ("a", "b"):
        cfg = config(tiny_model, http_dataset, str(tmp_path / run), captionDropout=0.3)
        assert train(cfg, tmp_path)[0] == 0
        loras.append(load_file(str(tmp_path / run / "lora.safetensors")))
    assert loras[0].keys() == loras[1].keys()
    assert all(torch.equal(loras[0][key], loras[1][key]) for key in loras[0])


@pytest.mark.parametrize("weights", ["int8", "nf4"])
def test_a_lora_trained_over_quantized_weights_works_on_the_full_model(
    tiny_model, tmp_path, http_dataset, weights
):
    from diffusers import FluxPipeline

    out = tmp_path / "out"
    # As on a 24-GB GPU: quantized weights, an 8-bit optimizer and every block recomputed.
    cfg = config(tiny_model, http_dataset, str(out), baseWeights=weights, optimizer="adamw8bit",
                 gradientCheckpointing=True)  # fmt: skip
    assert train(cfg, tmp_path)[0] == 0
    first, last = first_and_last_losses(out / "loss.csv")
    assert last < first

    pipeline = FluxPipeline.from_pretrained(tiny_model)  # full precision, as users run it
    before = render(pipeline, "a photo of p3r5on")
    pipeline.load_lora_weights(str(out / "lora.safetensors"))
    assert abs(render(pipeline, "a photo of p3r5on") - before).mean() > 1e-4


def test_samples_that_fail_never_cost_the_lora(
    tiny_model, tmp_path, http_dataset, monkeypatch, caplog
):
    from diffusers import FluxPipeline

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")

    monkeypatch.setattr(FluxPipeline, "__call__", out_of_memory)
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    cfg = config(tiny_model, http_dataset, str(out), samplePrompts=["a photo of p3r5on"])
    code, result = train(cfg, tmp_path)
    assert code == ExitCode.SUCCESS
    assert result["outputs"][:2] == ["lora.safetensors", "lora_comfyui.safetensors"]
    assert not [name for name in result["outputs"] if name.startswith("sample_")]
    assert (out / "lora.safetensors").is_file()
    assert not list((out / "checkpoints").glob("*.pt"))
    assert "samples skipped (the run goes on without them): CUDA out of memory" in caplog.text


def test_a_pod_lost_while_sampling_resumes_without_training_again(
    tiny_model, tmp_path, http_dataset, monkeypatch, caplog
):
    from fluxlora_trainer import sampling

    def lost(*args, **kwargs):
        raise KeyboardInterrupt  # the pod is gone mid-way: nothing after this runs

    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    cfg = config(tiny_model, http_dataset, str(out), samplePrompts=["a photo of p3r5on"])
    with monkeypatch.context() as patch:
        patch.setattr(sampling, "render_samples", lost)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, tmp_path)
    # The LoRA was uploaded before sampling began, and the final step checkpointed.
    assert (out / "lora.safetensors").is_file()
    assert [p.name for p in (out / "checkpoints").glob("*.pt")] == ["step-000500.pt"]

    caplog.clear()
    code, result = train(cfg, tmp_path)
    assert code == ExitCode.SUCCESS
    assert "resuming from the checkpoint at step 500" in caplog.text
    assert "step 500/500" not in caplog.text  # no step trained again
    assert "sample_0.png" in result["outputs"]
    steps = [int(row.split(",")[0]) for row in (out / "loss.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 501))
    assert not list((out / "checkpoints").glob("*.pt"))

"""Where a run's files live, and which output URLs belong to a run (one definition, used by the
operator when it reads the trainer's result and by the gateway before it streams a byte).

Every run writes under its own folder `<prefix>/<namespace>/<name>-<uid>/`. The trainer reports
plain file names; only names that stay inside that folder become outputs, so a hostile trainer
(it runs untrusted data) can never point a tenant at another run's files.
"""

import posixpath
import re

# The files every completed run writes, in this order (the LoRA first, as in the hosted API);
# then one sample image per sample prompt.
LORA_FILE = "lora.safetensors"
KOHYA_LORA_FILE = "lora_comfyui.safetensors"
CONFIG_FILE = "config.json"
LOSS_CSV_FILE = "loss.csv"
LOSS_PLOT_FILE = "loss.png"


def sample_file(index: int) -> str:
    return f"sample_{index}.png"


def at_step(name: str, step: int) -> str:
    """A final output's name for its copy made at `step`: lora.safetensors at step 250 is
    lora-step-000250.safetensors. Flat names, as every output's: a run's files all lie
    directly in its folder, the one place the operator and gateway ever serve them from."""
    return name.replace(".", f"-step-{step:06d}.", 1)


def snapshot_files(step: int) -> list[str]:
    """The LoRA saved at `step` (saveEverySteps), in both formats, as the final one."""
    return [at_step(LORA_FILE, step), at_step(KOHYA_LORA_FILE, step)]


def snapshot_samples(step: int, count: int) -> list[str]:
    """The first `count` sample images rendered at `step` (sampleEverySteps)."""
    return [at_step(sample_file(index), step) for index in range(count)]


def snapshot_steps(steps: int, *every: int | None) -> list[int]:
    """The steps a run of `steps` steps stores a snapshot at, for each interval given (not the
    last step: that is the final LoRA and samples)."""
    return sorted({step for each in every if each for step in range(each, steps, each)})


def snapshot_outputs(steps: list[int]) -> list[str]:
    """The files of the snapshots at `steps`."""
    return [name for step in steps for name in snapshot_files(step)]


def standard_outputs(sample_prompts: int, snapshots: list[int] | None = None) -> list[str]:
    """The names a completed run's outputs have, for `sample_prompts` sample prompts and
    snapshots at those steps: the final LoRA first (as in the hosted API), the snapshots
    last. The trainer reports only the first ones; the operator adds the snapshots, whose
    names it knows, so the result stays small whatever their number."""
    names = [LORA_FILE, KOHYA_LORA_FILE, CONFIG_FILE, LOSS_CSV_FILE, LOSS_PLOT_FILE]
    names += [sample_file(index) for index in range(sample_prompts)]
    return names + snapshot_outputs(snapshots or [])


# A plain file name: no folder, no "." or "..", no control characters.
_FILE_NAME = re.compile(r"^(?!\.\.?$)[^/\\\x00-\x1f\x7f]{1,255}$")


def run_folder(prefix: str, namespace: str, name: str, uid: str) -> str:
    """`<prefix>/<namespace>/<name>-<uid>`: the uid keeps a re-created resource of the same name
    from resuming (or serving) the old one's files."""
    return posixpath.join(prefix.rstrip("/") or "/", namespace, f"{name}-{uid}")


def is_file_name(name: str) -> bool:
    return bool(_FILE_NAME.match(name))


def resolve_output(folder: str, reported: str) -> str | None:
    """The URL of one reported output under the run's `folder`, or None when it points anywhere
    else. A plain file name is joined to the folder; a full URL is kept only when it names a
    file directly inside the folder (what older trainers reported)."""
    if is_file_name(reported):
        return f"{folder}/{reported}"
    inside = reported.removeprefix(folder.rstrip("/") + "/")
    if inside != reported and is_file_name(inside):
        return reported
    return None


def belongs_to_run(url: str, namespace: str, name: str, uid: str, prefix: str | None) -> bool:
    """Whether `url` is a file directly in the run's own folder. Without a known prefix (the
    operator's default output), the folder's last two parts must still be the run's own."""
    parent, _, file_name = url.rpartition("/")
    if not is_file_name(file_name):
        return False
    if prefix:
        return parent == run_folder(prefix, namespace, name, uid)
    return parent.endswith(f"/{namespace}/{name}-{uid}") and "/../" not in f"{parent}/"

"""The tiny FLUX pipeline the demo trains, written once per machine for each version of its
recipe and libraries, as a cluster's model cache holds a base model once: writing it imports
torch, diffusers and transformers, which took seconds of every demo's start and a second and a
half of its exit (the interpreter's teardown of torch)."""

import hashlib
import shutil
import tempfile
import time
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

from fluxlora_localcluster.binaries import CACHE

RECIPE = "fluxlora_trainer.tiny_model"
# What the written model depends on besides its recipe: a new version may save other files.
LIBRARIES = ("torch", "diffusers", "transformers", "tokenizers", "safetensors")
FAMILY = "tiny-flux-"


def tiny_model_key() -> str:
    spec = find_spec(RECIPE)  # its source, found without importing it (and torch with it)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{RECIPE} is not installed")
    digest = hashlib.sha256(Path(spec.origin).read_bytes())
    for library in LIBRARIES:
        digest.update(f"{library}=={version(library)}\n".encode())
    return digest.hexdigest()[:12]


def _folder(cache: Path) -> Path:
    return cache / "models" / f"{FAMILY}{tiny_model_key()}"


def cached_tiny_model(cache: Path = CACHE) -> Path:
    """The tiny model's folder in `cache`, written first if no run has (then older versions'
    folders are removed). Several processes may ask at once: each writes its own copy, and the
    first to rename it into place wins."""
    folder = _folder(cache)
    if folder.is_dir():
        return folder
    models = folder.parent
    from fluxlora_trainer.tiny_model import write_tiny_model  # torch: only when writing

    models.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{FAMILY}", dir=models))
    write_tiny_model(staging)
    try:
        staging.rename(folder)
    except OSError:  # another process put its copy in place first
        shutil.rmtree(staging, ignore_errors=True)
    for older in models.glob(f"{FAMILY}*"):
        if older != folder:
            shutil.rmtree(older, ignore_errors=True)
    return folder


def main() -> None:
    """`make demo` writes it while the servers compile, not after them (seconds of imports)."""
    began = time.monotonic()
    if _folder(CACHE).is_dir():
        return
    print("writing the demo's tiny model, once per machine ...", flush=True)
    folder = cached_tiny_model(CACHE)
    print(f"wrote the demo's tiny model in {time.monotonic() - began:.0f} s: {folder}", flush=True)


if __name__ == "__main__":
    main()

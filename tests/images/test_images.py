"""The images as built from their Dockerfiles (by `make images`, before the tests): what they
hold and run is checked on the real node (tests/cluster/test_node.py); here, how they are
built."""

import json
import re
import shutil
import urllib.request
import uuid
from pathlib import Path

import pytest

from fluxlora_localcluster import images, registry

pytestmark = pytest.mark.timeout(600)


def _context(tmp_path: Path) -> Path:
    """A copy of what the operator image's build reads."""
    context = tmp_path / "context"
    shutil.copytree(
        images.ROOT / "operator", context / "operator", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(  # the trainer's dataset modules, which the gateway's dataset check uses
        images.ROOT / "trainer-image" / "fluxlora_trainer",
        context / "trainer-image" / "fluxlora_trainer",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for part in ("pyproject.toml", "README.md", ".dockerignore"):
        (context / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(images.ROOT / part, context / part)
    return context


def test_a_change_to_our_code_rebuilds_only_the_layers_after_the_dependencies(tmp_path):
    context = _context(tmp_path)
    with (context / "operator" / "fluxlora_operator" / "__init__.py").open("a") as source:
        source.write(f"\n# a change never built before: {uuid.uuid4()}\n")
    built = "".join(
        images.build_dockerfile(context / "operator" / "Dockerfile", "fluxlora-layer-test", context)
    )
    steps = built.split("STEP ")[1:]
    dependencies = next(s for s in steps if "-r /tmp/requirements.lock" in s)
    code = next(s for s in steps if "COPY operator " in s)
    assert "Using cache" in dependencies  # the large layer is reused
    assert "Using cache" not in code  # our code is copied afresh
    images.buildah("rmi", "fluxlora-layer-test")


@pytest.mark.parametrize("which", sorted(images.IMAGES))
def test_each_dockerfile_defaults_to_the_public_slim_python_base(which):
    dockerfile = (images.ROOT / images.IMAGES[which].dockerfile).read_text()
    assert "ARG BASE=python:3.11-slim\nFROM ${BASE}" in dockerfile


def test_the_local_base_has_the_python_minor_version_of_the_public_default():
    container = images.buildah("from", images.base_image()).strip()
    try:
        version = images.buildah(
            "run",
            container,
            "--",
            "python3",
            "-c",
            "import sys; print(*sys.version_info[:2], sep='.')",
        )
    finally:
        images.buildah("rm", container)
    assert version.strip() == "3.11"


def test_the_images_benchmark_reads_each_images_size():
    """benchmarks/images.py's size table, read from the project's own image storage."""
    import importlib.util
    import os

    path = images.ROOT / "benchmarks" / "images.py"
    spec = importlib.util.spec_from_file_location("images_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    images.ensure_images()
    environment = {**os.environ, "PYTHONPATH": str(images.ROOT / "tests")}
    found = benchmark.sizes(images.ROOT, environment)
    for name in ("localhost/flux-lora-operator", "localhost/flux-lora-trainer"):
        number, unit = found[name].split()
        assert float(number) > 0 and unit in ("MB", "GB")
    assert "<none>" not in found


INSTALLED = """
import importlib.metadata, importlib.util, json, pathlib, re, sysconfig
sources = list(pathlib.Path(sysconfig.get_paths()["purelib"]).rglob("*.py"))
def compiles(source):  # some files are for later Pythons only (torch's py312_intrinsics.py)
    try:
        return bool(compile(source.read_bytes(), str(source), "exec"))
    except (SyntaxError, ValueError):
        return False
print(json.dumps({
    "installed": {
        re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
        for d in importlib.metadata.distributions()
    },
    "importable": [m for m in ("kopf", "fluxlora_operator", "fluxlora_gateway", "fluxlora_kube",
                               "fluxlora_trainer", "fluxlora_api", "torch")
                   if importlib.util.find_spec(m)],
    "sources": len(sources),
    "uncompiled": [str(p) for p in sources
                   if not pathlib.Path(importlib.util.cache_from_source(p)).exists()
                   and compiles(p)],
}))
"""


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_the_trainer_image_holds_its_lock_exactly_and_no_operator_code():
    """What the built image holds, read inside it: every pin of the trainer's lock at its
    version, compiled; the trainer and the API, and neither kopf nor the operator's or
    gateway's code."""
    (name,) = images.ensure_images("trainer")
    container = images.buildah("from", name).strip()
    try:
        found = json.loads(
            images.buildah("run", "--user", "0:0", container, "--", "python3", "-c", INSTALLED)
        )
    finally:
        images.buildah("rm", container)
    pins = _pins(images.ROOT / "trainer-image" / "requirements.lock")
    wrong = {n: (v, found["installed"].get(n)) for n, v in pins.items()
             if found["installed"].get(n) != v}  # fmt: skip
    assert wrong == {}, "installed versions differ from trainer-image/requirements.lock"
    assert set(found["importable"]) == {"fluxlora_trainer", "fluxlora_api", "torch"}
    assert "uv" not in found["installed"]  # the installer is not shipped
    # Compiled at build time: the root filesystem is read-only when it runs, so an uncompiled
    # module would be compiled again by every process that imports it (torch: seconds).
    assert found["sources"] > 10_000
    assert found["uncompiled"] == []


def test_make_images_removes_what_only_earlier_builds_used(tmp_path):
    """A rebuilt dependency layer leaves the old one behind (6 GB for the trainer); pruning
    removes it and keeps the current image."""

    def build(content: str) -> str:
        (tmp_path / "marker.txt").write_text(content)
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text(f"FROM {images.base_image()}\nCOPY marker.txt /marker.txt\n")
        images.build_dockerfile(dockerfile, "fluxlora-prune-test", tmp_path)
        return images.image_id("fluxlora-prune-test")

    earlier = build(str(uuid.uuid4()))
    current = build(str(uuid.uuid4()))
    assert earlier != current
    assert images.prune_unused() >= 1
    kept = images.buildah("images", "--all", "--no-trunc", "--format", "{{.ID}}")
    assert current in kept and earlier not in kept
    images.buildah("rmi", "fluxlora-prune-test")


def test_a_push_leaves_no_earlier_layer_in_the_registry(tmp_path):
    """The registry keeps what the tags reference: a rebuilt image's earlier layers (gigabytes
    for the trainer) are deleted when the new one is pushed; the new one still resolves. Layers
    are pushed zstd-compressed (a node unpacks them seven times faster than gzip's)."""
    name = "fluxlora-gc-test:1"

    def publish(content: str) -> str:
        (tmp_path / "marker.txt").write_text(content)
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text(f"FROM {images.base_image()}\nCOPY marker.txt /marker.txt\n")
        images.build_dockerfile(dockerfile, name, tmp_path)
        images.publish(name)
        with registry.running_registry() as address:
            assert registry.published_id(address, name) == images.image_id(name)
            layer = _top_layer(address, name)
            assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
            return layer["digest"].removeprefix("sha256:")

    earlier = publish(str(uuid.uuid4()))
    assert _blob(earlier).exists()
    current = publish(str(uuid.uuid4()))
    assert current != earlier
    assert _blob(current).exists() and not _blob(earlier).exists()
    images.buildah("rmi", name)


def _top_layer(address: str, name: str) -> dict:
    repository, _, tag = registry.reference(address, name).partition("/")[2].rpartition(":")
    request = urllib.request.Request(
        f"http://{address}/v2/{repository}/manifests/{tag}",
        headers={"Accept": ", ".join(registry.MANIFEST_TYPES)},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["layers"][-1]


def _blob(digest: str) -> Path:
    return registry.STORAGE / "data/docker/registry/v2/blobs/sha256" / digest[:2] / digest


def test_a_build_with_nothing_changed_says_its_image_is_up_to_date(capsys):
    name = images.build("operator")  # `make test` has built it from this checkout
    said = capsys.readouterr().out
    assert f"{name} is up to date" in said and "built " not in said, said

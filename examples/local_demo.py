"""`make demo`: the main job, end to end, on a local control plane.

Builds or reuses kube-apiserver, controller-manager, scheduler, kubectl, etcd, helm and MinIO;
starts them and a node agent with one GPU; prepares a training namespace (storage credentials,
a model cache holding a tiny FLUX model, a generated dataset in MinIO); installs the operator
with `helm install` (its CRD, RBAC and Deployment; the node agent runs the operator pod);
applies a LoRATrainingJob with kubectl and watches it until it completes; prints the output URLs;
and shuts everything down (--keep leaves it running).
"""

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from fluxlora_api import resource  # noqa: E402
from fluxlora_operator.kube import Kube  # noqa: E402
from fluxlora_trainer.tiny_model import write_tiny_model  # noqa: E402
from tests.support.binaries import CACHE  # noqa: E402
from tests.support.control_plane import ControlPlane, running_control_plane  # noqa: E402
from tests.support.helm import CHART, helm  # noqa: E402
from tests.support.minio import S3Server, running_minio  # noqa: E402
from tests.support.node_agent import NodeAgent  # noqa: E402
from tests.support.processes import stop  # noqa: E402
from tests.support.training_site import (  # noqa: E402
    MODEL_PATH,
    RESTRICTED,
    chart_values,
    create_namespace,
    model_cache_claim,
    store_credentials,
)
from tests.trainer.datasets import make_zip, photos  # noqa: E402

NAMESPACE = "demo"
OPERATOR_NAMESPACE = "fluxlora-system"
BUCKET = "demo"
TIMEOUT_SECONDS = 900


def shown(command: list[str]) -> str:
    """A command as the user would type it (binaries by name, the chart by its repo path)."""
    words = [Path(command[0]).name, *command[1:]]
    return " ".join(shlex.quote(w.replace(str(ROOT) + "/", "")) for w in words)


def prepare_site(kube: Kube, agent: NodeAgent, s3: S3Server, work: Path) -> None:
    """The training namespace: restricted Pod Security, credentials, model cache, dataset."""
    create_namespace(kube, NAMESPACE, RESTRICTED)
    store_credentials(kube, NAMESPACE, s3)
    model_cache_claim(kube, agent, NAMESPACE, write_tiny_model(work / "tiny-flux"))
    s3.client().create_bucket(Bucket=BUCKET)
    dataset = make_zip(work / "portrait.zip", {**photos(5), "photo_0.txt": "[trigger] smiling"})
    s3.client().upload_file(str(dataset), BUCKET, "datasets/portrait.zip")
    print(f"dataset uploaded: s3://{BUCKET}/datasets/portrait.zip (5 images, 1 caption)")


def install_operator(plane: ControlPlane, s3: S3Server) -> bool:
    create_namespace(plane.admin(), OPERATOR_NAMESPACE, RESTRICTED)
    arguments = ["install", "fluxlora", str(CHART), "--namespace", OPERATOR_NAMESPACE, "--wait",
                 *chart_values(s3, BUCKET, [NAMESPACE])]  # fmt: skip
    print(f"\n$ {shown(['helm', *arguments])}", flush=True)
    result = helm(*arguments, kubeconfig=plane.kubeconfig)
    print(result.stdout.split("NOTES:")[0].strip() or result.stderr.strip())
    return result.returncode == 0


def watch_until_done(plane: ControlPlane, kube: Kube, name: str) -> dict:
    """`kubectl get ltj -w` (the real kubectl) until the resource has ended."""
    command = [str(plane.kubectl_binary), "-n", NAMESPACE, "get", "ltj", "-w"]
    print(f"\n$ {shown(command)}", flush=True)
    watch = subprocess.Popen([*command, "--kubeconfig", str(plane.kubeconfig)])
    deadline, item = time.monotonic() + TIMEOUT_SECONDS, {}
    try:
        while time.monotonic() < deadline:
            item = kube.get(resource.KIND, NAMESPACE, name) or {}
            if (item.get("status") or {}).get("phase") in ("completed", "failed"):
                time.sleep(1)  # let kubectl print the last row
                break
            time.sleep(1)
    finally:
        stop(watch)
    return item


def train_and_show(plane: ControlPlane, kube: Kube, work: Path, keep: bool) -> int:
    body = {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": "portrait"},
        "spec": {
            "data": f"s3://{BUCKET}/datasets/portrait.zip",
            "baseModel": MODEL_PATH,
            "steps": 500,
            "resolution": 256,
        },
    }
    manifest = work / "portrait.yaml"
    manifest.write_text(yaml.safe_dump(body, sort_keys=False))
    print(f"\n$ cat portrait.yaml\n{manifest.read_text().rstrip()}")
    command = [str(plane.kubectl_binary), "-n", NAMESPACE, "apply", "-f", "portrait.yaml"]
    print(f"\n$ {shown(command)}", flush=True)
    applied = plane.kubectl("-n", NAMESPACE, "apply", "-f", str(manifest))
    print((applied.stdout or applied.stderr).strip())
    if applied.returncode != 0:
        return 1
    status = watch_until_done(plane, kube, "portrait").get("status") or {}
    if status.get("phase") != "completed":
        print(f"\nthe run did not complete: {status.get('error') or 'timed out'}")
        return 1
    print(f"\ncompleted in {status['timings']['inference'] / 1000:.1f} s; outputs:")
    for url in status["outputs"]:
        print(f"  {url}")
    if keep:
        print(f"\nstill running. Use it with:\n  export KUBECONFIG={plane.kubeconfig}\n"
              f"  {plane.kubectl_binary} -n {NAMESPACE} get ltj\n"
              "Press Ctrl-C to stop.")  # fmt: skip
        while True:
            time.sleep(3600)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave everything running at the end")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fluxlora-demo-"))
    print(f"building or reusing the control plane, helm and MinIO (cached in {CACHE}/bin) ...")
    agent_dir = CACHE / "node-agent" / f"demo-{uuid.uuid4().hex[:6]}"
    try:
        with (
            running_control_plane(work / "control-plane") as plane,
            running_minio(work / "minio") as s3,
        ):
            kube = plane.admin()
            agent = NodeAgent(kube, "gpu-node-1", agent_dir, plane.server, plane.ca_file).start()
            try:
                prepare_site(kube, agent, s3, work)
                if not install_operator(plane, s3):
                    return 1
                return train_and_show(plane, kube, work, args.keep)
            except KeyboardInterrupt:
                return 0
            finally:
                agent.stop()  # and with it the operator's pod
                print("\nstopped the operator, the node agent, MinIO and the control plane")
    finally:
        shutil.rmtree(agent_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""`make demo`: the main job, end to end, on a local control plane.

Builds or reuses kube-apiserver, controller-manager, scheduler, etcd and MinIO; starts them and a
node agent with one GPU; installs the CRD; runs `fluxlora-operator`; uploads a small generated
dataset; applies a LoRATrainingJob on a tiny FLUX model; shows the resource until it completes;
prints the output URLs; and shuts everything down (--keep leaves it running).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from fluxlora_api import resource  # noqa: E402
from fluxlora_operator.kube import Kube, path  # noqa: E402
from fluxlora_trainer.tiny_model import write_tiny_model  # noqa: E402
from tests.support.binaries import CACHE  # noqa: E402
from tests.support.control_plane import running_control_plane  # noqa: E402
from tests.support.minio import running_minio  # noqa: E402
from tests.support.node_agent import NodeAgent  # noqa: E402
from tests.support.operator import operator_process  # noqa: E402
from tests.support.processes import stop  # noqa: E402
from tests.support.training_site import (  # noqa: E402
    MODEL_PATH,
    create_namespace,
    install_crd,
    model_cache_claim,
    operator_environment,
    store_credentials,
)
from tests.trainer.datasets import make_zip, photos  # noqa: E402

NAMESPACE = "demo"
TIMEOUT_SECONDS = 900


def watch_until_done(plane, kube: Kube, name: str) -> dict:
    """`kubectl get ltj -w` (the real kubectl) until the resource has ended."""
    print(f"\n$ kubectl -n {NAMESPACE} get ltj -w", flush=True)
    watch = subprocess.Popen(
        [str(plane.kubectl_binary), "--kubeconfig", str(plane.kubeconfig),
         "-n", NAMESPACE, "get", "ltj", "-w"]
    )  # fmt: skip
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


def train_and_show(plane, kube: Kube, bucket: str, keep: bool) -> int:
    body = {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": "portrait"},
        "spec": {
            "data": f"s3://{bucket}/datasets/portrait.zip",
            "baseModel": MODEL_PATH,
            "steps": 500,
            "resolution": 256,
        },
    }
    kube.request("POST", path(resource.KIND, NAMESPACE), body)
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
    print(f"building or reusing the control plane and MinIO (cached in {CACHE}/bin) ...")
    try:
        with (
            running_control_plane(work / "control-plane") as plane,
            running_minio(work / "minio") as s3,
        ):
            kube = plane.admin()
            install_crd(kube)
            agent_dir = CACHE / "node-agent" / f"demo-{uuid.uuid4().hex[:6]}"
            agent = NodeAgent(kube, "gpu-node-1", agent_dir, plane.server, plane.ca_file).start()
            create_namespace(kube, NAMESPACE)
            store_credentials(kube, NAMESPACE, s3)
            model = write_tiny_model(work / "tiny-flux")
            model_cache_claim(kube, agent, NAMESPACE, model)
            bucket = "demo"
            s3.client().create_bucket(Bucket=bucket)
            dataset = make_zip(
                work / "portrait.zip", {**photos(5), "photo_0.txt": "[trigger] smiling"}
            )
            s3.client().upload_file(str(dataset), bucket, "datasets/portrait.zip")
            print(f"dataset uploaded: s3://{bucket}/datasets/portrait.zip (5 images, 1 caption)")

            try:
                with operator_process(
                    plane.kubeconfig, operator_environment(s3, bucket), work / "operator.log"
                ):
                    return train_and_show(plane, kube, bucket, args.keep)
            except KeyboardInterrupt:
                return 0
            finally:
                agent.stop()
                shutil.rmtree(agent_dir, ignore_errors=True)
                print("\nstopped the operator, the node agent, MinIO and the control plane")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

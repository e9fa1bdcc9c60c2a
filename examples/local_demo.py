"""`make demo`: the main job, end to end, on a local control plane.

Builds or reuses kube-apiserver, controller-manager, scheduler, kubectl, etcd, helm and MinIO;
starts them and a node agent with one GPU; prepares a training namespace (storage credentials,
a model cache holding a tiny FLUX model, a generated dataset in MinIO); installs the operator
with `helm install` (its CRD, RBAC and Deployment; the node agent runs the operator pod);
applies a LoRATrainingJob with kubectl and watches it until it completes; prints the output URLs;
then does the same through the hosted API's REST gateway with curl (submit, poll, download); and
shuts everything down (--keep leaves it running).
"""

import argparse
import json
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
from fluxlora_gateway.hosted import SUBMIT_PATH  # noqa: E402
from fluxlora_gateway.keys import new_key  # noqa: E402
from fluxlora_operator.kube import Kube  # noqa: E402
from fluxlora_trainer.tiny_model import write_tiny_model  # noqa: E402
from tests.support.binaries import CACHE  # noqa: E402
from tests.support.control_plane import ControlPlane, running_control_plane  # noqa: E402
from tests.support.gateway_client import GatewayClient  # noqa: E402
from tests.support.helm import CHART, helm  # noqa: E402
from tests.support.minio import S3Server, free_port, running_minio  # noqa: E402
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


def install_operator(plane: ControlPlane, s3: S3Server, gateway_port: int) -> bool:
    kube = plane.admin()
    create_namespace(kube, OPERATOR_NAMESPACE, RESTRICTED)
    store_credentials(kube, OPERATOR_NAMESPACE, s3)  # the gateway streams outputs with them
    arguments = ["install", "fluxlora", str(CHART), "--namespace", OPERATOR_NAMESPACE, "--wait",
                 *chart_values(s3, BUCKET, [NAMESPACE], gateway_port)]  # fmt: skip
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


def curl(*args: str, key: str, show: bool = True) -> str:
    """Run curl; print the command with the key written as $KEY."""
    if show:
        print(f"\n$ curl {' '.join(shlex.quote(a) for a in args).replace(key, '$KEY')}", flush=True)
    return subprocess.run(["curl", "--silent", "--show-error", *args], capture_output=True,
                          text=True, check=True, timeout=60).stdout  # fmt: skip


def hosted_api_flow(gateway: GatewayClient, key: str) -> int:
    """The hosted API's two curl commands against the local gateway, then the download."""
    print(f"\nThe same through the hosted API's gateway ({gateway.url}); KEY is a key for "
          f"namespace {NAMESPACE} made with `fluxlora-gateway key {NAMESPACE}`:")  # fmt: skip
    body = {"data": f"s3://{BUCKET}/datasets/portrait.zip", "trigger_word": "p3r5on",
            "steps": 500, "learning_rate": 0.0004, "lora_rank": 16}  # fmt: skip
    submitted = json.loads(curl(
        "--location", "--request", "POST", gateway.url + SUBMIT_PATH,
        "--header", "Content-Type: application/json",
        "--header", f"Authorization: Bearer {key}",
        "--data-raw", json.dumps(body), key=key,
    ))  # fmt: skip
    print(json.dumps(submitted, indent=2))
    result_url = submitted["data"]["urls"]["get"]
    deadline, data, shown = time.monotonic() + TIMEOUT_SECONDS, {}, ""
    query = ["--location", "--request", "GET", result_url,
             "--header", f"Authorization: Bearer {key}"]  # fmt: skip
    curl(*query, key=key)  # shown once, then polled
    while time.monotonic() < deadline:
        data = json.loads(curl(*query, key=key, show=False))["data"]
        if data["status"] != shown:
            print(f"  status: {data['status']}", flush=True)
            shown = data["status"]
        if data["status"] in ("completed", "failed"):
            break
        time.sleep(2)
    print(json.dumps(data, indent=2))
    if data.get("status") != "completed":
        return 1
    downloaded = Path(tempfile.mkdtemp()) / "lora.safetensors"
    curl("--fail", "--output", str(downloaded), data["outputs"][0],
         "--header", f"Authorization: Bearer {key}", key=key)  # fmt: skip
    print(f"downloaded lora.safetensors ({downloaded.stat().st_size} bytes)")
    shutil.rmtree(downloaded.parent)
    return 0


def train_and_show(plane: ControlPlane, kube: Kube, work: Path) -> int:
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
    return 0


def keep_running(plane: ControlPlane, gateway: GatewayClient, key: str) -> None:
    print(f"\nstill running. Use it with:\n  export KUBECONFIG={plane.kubeconfig}\n"
          f"  {plane.kubectl_binary} -n {NAMESPACE} get ltj\n"
          f"  curl -H 'Authorization: Bearer {key}' {gateway.url}/openapi.json\n"
          "Press Ctrl-C to stop.")  # fmt: skip
    while True:
        time.sleep(3600)


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
                gateway_port = free_port()
                if not install_operator(plane, s3, gateway_port) or train_and_show(
                    plane, kube, work
                ):
                    return 1
                gateway_url = f"http://127.0.0.1:{gateway_port}"
                gateway = GatewayClient(gateway_url, kube, OPERATOR_NAMESPACE)
                key = new_key()
                gateway.set_keys(demo=(key, NAMESPACE))
                if not gateway.ready() or hosted_api_flow(gateway, key):
                    return 1
                if args.keep:
                    keep_running(plane, gateway, key)
                return 0
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

"""`make demo`: the main job, end to end, on a local control plane.

Builds or reuses kube-apiserver, controller-manager, scheduler, kubectl, etcd, helm, MinIO and
a node's servers, and both images (`make images`); starts the control plane, MinIO and a real
node with one GPU (containerd, kubelet, kube-proxy, CoreDNS, a GPU device plugin); prepares a
training namespace (storage credentials, a model cache holding a tiny FLUX model, a generated
dataset in MinIO); installs the operator with `helm install` (its CRD, RBAC and Deployment: the
operator and gateway pods run from the operator image); applies a LoRATrainingJob with kubectl
and watches it until it completes (the trainer pod runs from the trainer image); shows the pods
and the trainer pod as kubectl describes them; prints the output URLs; then does the same
through the hosted API's REST gateway with curl (upload the dataset, submit it with a webhook,
poll, download, and show the signed webhook arriving); and shuts everything down (--keep leaves
it running until Ctrl-C).

It watches what it started: when the operator's or the gateway's pod stops, or the resource gets
no phase, it prints the pod's state, termination message and last log lines and exits with 1.
Ctrl-C (or SIGTERM) at any point stops everything it started, in order, within seconds.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import yaml

from fluxlora_api import resource
from fluxlora_gateway.hosted import SUBMIT_PATH, WEBHOOK_SECRET_PATH
from fluxlora_gateway.keys import new_key
from fluxlora_gateway.uploads import BINARY_PATH
from fluxlora_gateway.web_page import PAGE_PATH
from fluxlora_kube.client import Kube
from fluxlora_kube.paths import path
from fluxlora_localcluster.binaries import CACHE
from fluxlora_localcluster.control_plane import ControlPlane, running_control_plane
from fluxlora_localcluster.datasets import make_zip, photos
from fluxlora_localcluster.gateway_client import GatewayClient
from fluxlora_localcluster.helm import CHART, helm
from fluxlora_localcluster.images import current_names, ensure_images
from fluxlora_localcluster.minio import S3Server, running_minio
from fluxlora_localcluster.node import FIRST_NODE, Node, running_node
from fluxlora_localcluster.node_network import HOST_ADDRESS, ensure_host_address
from fluxlora_localcluster.pod_health import describe, problem
from fluxlora_localcluster.processes import ServerFailed, stop
from fluxlora_localcluster.tiny_model_cache import cached_tiny_model
from fluxlora_localcluster.training_site import (
    MODEL_PATH,
    RESTRICTED,
    chart_values,
    create_namespace,
    model_cache_claim,
    store_credentials,
)
from fluxlora_localcluster.webhook_receiver import webhook_receiver
from fluxlora_net.webhooks import verify
from fluxlora_operator import naming

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "demo"
NODE = FIRST_NODE
COMPONENT = "app.kubernetes.io/component"
OPERATOR_NAMESPACE = "fluxlora-system"
BUCKET = "demo"
TIMEOUT_SECONDS = 900
WEBHOOK_WAIT_SECONDS = 30  # after the run completed
READY_TIMEOUT_SECONDS = 120  # for the operator's and gateway's pods after `helm install`
NO_PHASE_SECONDS = 30  # the operator gives a new resource its first phase within seconds
FAILED = 1


class DemoFailed(Exception):
    """A step the demo cannot go on from; the message says why, for the user."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop everything the demo started."""


def interrupt(signum: int, frame) -> None:
    """The first Ctrl-C or SIGTERM stops the demo; later ones must not cut the stopping short."""
    hold_signals()
    os.write(sys.stdout.fileno(), b"\nstopping everything the demo started ...\n")
    raise Interrupted


def hold_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def shown(command: list[str]) -> str:
    """A command as the user would type it (binaries by name, the chart by its repo path)."""
    words = [Path(command[0]).name, *command[1:]]
    return " ".join(shlex.quote(w.replace(str(ROOT) + "/", "")) for w in words)


def prepare_site(kube: Kube, node: Node, s3: S3Server, work: Path) -> None:
    """The training namespace: restricted Pod Security, credentials, model cache, dataset."""
    create_namespace(kube, NAMESPACE, RESTRICTED)
    store_credentials(kube, NAMESPACE, s3)
    model_cache_claim(kube, node, NAMESPACE, cached_tiny_model())
    s3.client().create_bucket(Bucket=BUCKET)
    dataset = make_zip(work / "portrait.zip", {**photos(5), "photo_0.txt": "[trigger] smiling"})
    s3.client().upload_file(str(dataset), BUCKET, "datasets/portrait.zip")
    print(f"dataset uploaded: s3://{BUCKET}/datasets/portrait.zip (5 images, 1 caption)")


def install_operator(plane: ControlPlane, s3: S3Server, values: list[str]) -> list[dict]:
    """`helm install` of the chart; returns the release's pods once they run."""
    kube = plane.admin()
    create_namespace(kube, OPERATOR_NAMESPACE, RESTRICTED)
    store_credentials(kube, OPERATOR_NAMESPACE, s3)  # the gateway streams outputs with them
    # One run at a time here: its trainer may have every core the operator's and gateway's
    # requests leave (torch's threads follow the request, rounded up).
    trainer_cpu = f"{(os.cpu_count() or 1) * 1000 - 300}m"
    # No --wait: helm would wait its whole timeout for a pod that crash-loops; the demo watches
    # the pods itself and stops at the first one that cannot run.
    arguments = ["install", "fluxlora", str(CHART), "--namespace", OPERATOR_NAMESPACE,
                 *chart_values(s3, BUCKET, [NAMESPACE]),
                 "--set-string", f"trainer.cpuRequest={trainer_cpu}",
                 *(item for value in values for item in ("--set", value))]  # fmt: skip
    print(f"\n$ {shown(['helm', *arguments])}", flush=True)
    result = helm(*arguments, kubeconfig=plane.kubeconfig)
    print(result.stdout.split("NOTES:")[0].strip() or result.stderr.strip())
    if result.returncode != 0:
        raise DemoFailed("helm install failed")
    return wait_for_release(plane)


def release_pods(plane: ControlPlane) -> list[dict]:
    """The operator's and gateway's pods; DemoFailed with their story when one has stopped."""
    pods = plane.admin().request("GET", path("Pod", OPERATOR_NAMESPACE))["items"]
    stopped = [pod for pod in pods if problem(pod)]
    if stopped:
        raise DemoFailed(explain(plane, "a pod of the release has stopped", stopped))
    return pods


def explain(plane: ControlPlane, what: str, pods: list[dict]) -> str:
    stories = [describe(pod, log_tail(plane, pod)) for pod in pods]
    return "\n".join([f"{what}:", *stories] if stories else [f"{what}: no pod"])


def log_tail(plane: ControlPlane, pod: dict) -> str:
    """The last lines of the pod's log, or of its previous run's when it is waiting to restart
    (what `kubectl logs` shows; nothing when it never ran)."""
    meta = pod["metadata"]
    for previous in ((), ("--previous",)):
        logs = plane.kubectl("logs", "-n", meta["namespace"], meta["name"], "--tail", "20",
                             *previous)  # fmt: skip
        if logs.returncode == 0 and logs.stdout.strip():
            return logs.stdout
    return ""


def wait_for_release(plane: ControlPlane) -> list[dict]:
    """Until every pod of the release runs and is ready; DemoFailed, with the pod's story, as
    soon as one has stopped or is crash-looping."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        pods = release_pods(plane)
        if pods and all(ready(pod) for pod in pods):
            print(f"running: {', '.join(pod['metadata']['name'] for pod in pods)}", flush=True)
            return pods
        time.sleep(1)
    raise DemoFailed(explain(plane, f"not ready within {READY_TIMEOUT_SECONDS} s", pods))


def ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def watch_until_done(plane: ControlPlane, kube: Kube, name: str) -> dict:
    """`kubectl get ltj -w` (the real kubectl) until the resource has ended; DemoFailed when the
    operator stops or leaves the resource without a phase."""
    command = [str(plane.kubectl_binary), "-n", NAMESPACE, "get", "ltj", "-w"]
    print(f"\n$ {shown(command)}", flush=True)
    # Its output goes to the terminal: the process is started as the servers are, with no log.
    watch = subprocess.Popen([*command, "--kubeconfig", str(plane.kubeconfig)], process_group=0)
    began, item = time.monotonic(), {}
    try:
        while time.monotonic() < began + TIMEOUT_SECONDS:
            pods = release_pods(plane)
            item = kube.get(resource.KIND, NAMESPACE, name) or {}
            phase = (item.get("status") or {}).get("phase")
            if phase in ("completed", "failed"):
                time.sleep(1)  # let kubectl print the last row
                break
            if not phase and time.monotonic() > began + NO_PHASE_SECONDS:
                what = f"{name} has no phase after {NO_PHASE_SECONDS} s: the operator ignores it"
                raise DemoFailed(explain(plane, what, pods))
            time.sleep(1)
    finally:
        stop(watch)
    return item


def shown_with_key(arg: str, key: str) -> str:
    """`arg` as a shell word, the key written as $KEY in double quotes so that a pasted
    command expands it (single quotes would send a literal $KEY)."""
    if key not in arg:
        return shlex.quote(arg)
    return '"' + re.sub(r'(["\\$`])', r"\\\1", arg).replace(key, "$KEY") + '"'


def curl(*args: str, key: str, show: bool = True) -> str:
    """Run curl; print the command with the key written as $KEY."""
    if show:
        print(f"\n$ curl {' '.join(shown_with_key(a, key) for a in args)}", flush=True)
    return subprocess.run(["curl", "--silent", "--show-error", *args], capture_output=True,
                          text=True, check=True, timeout=60).stdout  # fmt: skip


def hosted_api_flow(gateway: GatewayClient, key: str, plane: ControlPlane, work: Path) -> int:
    """The hosted API against the local gateway: upload the dataset, submit it with a webhook,
    poll the result, download the LoRA, and show the signed webhook that arrived."""
    print(f"\nThe same through the hosted API's gateway ({gateway.url}); KEY is a key for "
          f"namespace {NAMESPACE} made with `fluxlora-gateway key {NAMESPACE}`:")  # fmt: skip
    uploaded = json.loads(curl(
        "--request", "POST", gateway.url + BINARY_PATH,
        "--header", f"Authorization: Bearer {key}",
        "--form", f"file=@{work / 'portrait.zip'}", key=key,
    ))  # fmt: skip
    print(json.dumps(uploaded, indent=2))
    secret = gateway.call("GET", WEBHOOK_SECRET_PATH, key)[1]["data"]["secret"]
    with webhook_receiver(host=HOST_ADDRESS) as hook:
        print(f"(a webhook receiver listens at {hook.url})")
        body = {"data": uploaded["data"]["download_url"], "trigger_word": "p3r5on",
                "steps": 500, "learning_rate": 0.0004, "lora_rank": 16}  # fmt: skip
        submitted = json.loads(curl(
            "--location", "--request", "POST",
            f"{gateway.url}{SUBMIT_PATH}?webhook={quote(hook.url, safe='')}",
            "--header", "Content-Type: application/json",
            "--header", f"Authorization: Bearer {key}",
            "--data-raw", json.dumps(body), key=key,
        ))  # fmt: skip
        print(json.dumps(submitted, indent=2))
        data = poll_result(gateway, key, plane, submitted["data"]["urls"]["get"])
        if data.get("status") != "completed":
            return 1
        downloaded = Path(tempfile.mkdtemp()) / "lora.safetensors"
        curl("--fail", "--output", str(downloaded), data["outputs"][0],
             "--header", f"Authorization: Bearer {key}", key=key)  # fmt: skip
        print(f"downloaded lora.safetensors ({downloaded.stat().st_size} bytes)")
        shutil.rmtree(downloaded.parent)
        if not hook.wait(1, WEBHOOK_WAIT_SECONDS):
            print("no webhook arrived")
            return 1
    _, headers, sent = hook.requests[0]
    signed = verify(secret, headers, sent, time.time())
    arrived = json.loads(sent)
    print(f"\nwebhook arrived: POST {hook.url}\n  webhook-id: {headers['webhook-id']}\n"
          f"  webhook-signature: {headers['webhook-signature'][:24]}... "
          f"({'verified' if signed else 'NOT verified'} with the namespace's whsec_ secret)\n"
          f"  status {arrived['status']}, {len(arrived['outputs'])} outputs, "
          f"input {json.dumps(arrived['input'])}")  # fmt: skip
    return 0 if signed else 1


def poll_result(gateway: GatewayClient, key: str, plane: ControlPlane, result_url: str) -> dict:
    """The prediction once it ends (or as it is at the demo's timeout)."""
    deadline, data, shown = time.monotonic() + TIMEOUT_SECONDS, {}, ""
    query = ["--location", "--request", "GET", result_url,
             "--header", f"Authorization: Bearer {key}"]  # fmt: skip
    curl(*query, key=key)  # shown once, then polled
    while time.monotonic() < deadline:
        release_pods(plane)
        data = json.loads(curl(*query, key=key, show=False))["data"]
        if data["status"] != shown:
            print(f"  status: {data['status']}", flush=True)
            shown = data["status"]
        if data["status"] in ("completed", "failed"):
            break
        time.sleep(2)
    print(json.dumps(data, indent=2))
    return data


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
    show_pods(plane, "portrait")
    if status.get("phase") != "completed":
        print(f"\nthe run did not complete: {status.get('error') or 'timed out'}")
        return 1
    print(f"\ncompleted in {status['timings']['inference'] / 1000:.1f} s; outputs:")
    for url in status["outputs"]:
        print(f"  {url}")
    return 0


def show_pods(plane: ControlPlane, name: str) -> None:
    """Where everything ran: the pods of the release and of the run on the node, and the
    trainer's pod as `kubectl describe` shows it (image, user, resources, the GPU)."""
    for arguments in (
        ["get", "pods", "--all-namespaces", "-o", "wide"],
        ["-n", NAMESPACE, "describe", "pod", "-l", f"{naming.LABEL_TRAINING_JOB}={name}"],
    ):
        print(f"\n$ {shown([str(plane.kubectl_binary), *arguments])}", flush=True)
        done = plane.kubectl(*arguments)
        print((done.stdout or done.stderr).rstrip(), flush=True)


def keep_running(plane: ControlPlane, gateway: GatewayClient, key: str) -> None:
    """Until Ctrl-C, or until a pod of the release stops (then DemoFailed says why)."""
    print(f"\nstill running. Use it with:\n  export KUBECONFIG={plane.kubeconfig}\n"
          f"  {plane.kubectl_binary} -n {NAMESPACE} get ltj\n"
          f"  curl -H 'Authorization: Bearer {key}' {gateway.url}/openapi.json\n"
          f"  the web page: {gateway.url}{PAGE_PATH} (key {key})\n"
          "Press Ctrl-C to stop.", flush=True)  # fmt: skip
    while True:
        release_pods(plane)
        time.sleep(5)


def gateway_url(pods: list[dict]) -> str:
    """The gateway pod's address: this machine routes to the node's pods (node_network.py)."""
    (pod,) = [p for p in pods if p["metadata"]["labels"].get(COMPONENT) == "gateway"]
    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    return f"http://{pod['status']['podIP']}:{port}"


def run(args: argparse.Namespace, plane: ControlPlane, s3: S3Server, node: Node) -> int:
    kube = plane.admin()
    prepare_site(kube, node, s3, Path(args.work))
    pods = install_operator(plane, s3, args.set)
    if train_and_show(plane, kube, Path(args.work)):
        return FAILED
    gateway = GatewayClient(gateway_url(pods), kube, OPERATOR_NAMESPACE)
    key = new_key()
    gateway.set_keys(demo=(key, NAMESPACE))
    if not gateway.ready():
        return FAILED
    # A demo key of a throwaway cluster, printed so that a person can watch in a browser.
    print(f"\nWatch the runs in a browser: {gateway.url}{PAGE_PATH} (sign in with {key})",
          flush=True)  # fmt: skip
    if hosted_api_flow(gateway, key, plane, Path(args.work)):
        return FAILED
    if args.keep:
        args.kept = True
        keep_running(plane, gateway, key)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave everything running at the end")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a chart value for helm install, as helm --set takes it")  # fmt: skip
    parser.add_argument(
        "--images-built", action="store_true", help="the images are built and pushed (make images)"
    )
    args = parser.parse_args()
    args.kept = False
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)

    args.work = tempfile.mkdtemp(prefix="fluxlora-demo-")
    work = Path(args.work)
    print(f"starting the control plane and MinIO (binaries in {CACHE}/bin) ...", flush=True)
    code, stopping_since = FAILED, None
    try:
        with (
            running_control_plane(work / "control-plane") as plane,
            running_minio(work / "minio", ensure_host_address()) as s3,
        ):
            # `make demo` has just built and pushed them (`make images`): no second check.
            images = current_names() if args.images_built else ensure_images()
            print(f"starting {NODE} with one GPU: containerd, kubelet, kube-proxy, CoreDNS and "
                  f"a GPU device plugin; it pulls {', '.join(images)} ...", flush=True)  # fmt: skip
            with running_node(plane, work / "node", name=NODE, images=images) as node:
                try:
                    code = run(args, plane, s3, node)
                except DemoFailed as failure:
                    print(f"\n{failure}", flush=True)
                finally:
                    hold_signals()  # stopping must not be cut short by a second Ctrl-C
                    stopping_since = time.monotonic()
    except Interrupted:
        code = 0 if args.kept else 130  # stopping a kept demo is how it ends
    except ServerFailed as failure:  # its own words on why (its log goes with the work folder)
        print(f"\n{failure}", flush=True)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    took = f" in {time.monotonic() - stopping_since:.1f} s" if stopping_since else ""
    print(f"stopped the node and its pods, MinIO and the control plane{took}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

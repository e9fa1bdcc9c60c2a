"""Kueue beside the local control plane: its manager built from the pinned Go module, its CRDs
and its admission webhooks (Job and Kueue's own kinds) from the same module, installed as its
own manifests install them, with its own certificate management.

The manager runs on this machine (like the operator in most tests): the API server reaches its
webhooks through a Service whose endpoint is the host address, as it reaches a webhook pod
(the control plane routes to endpoints, so no cluster IP is needed).
"""

import base64
import contextlib
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from fluxlora_localcluster.binaries import ensure_kueue, kueue_source
from fluxlora_localcluster.control_plane import ControlPlane
from fluxlora_localcluster.minio import free_port
from fluxlora_localcluster.node_network import ensure_host_address
from fluxlora_localcluster.processes import start, stop

NAMESPACE = "kueue-system"
SERVICE = "kueue-webhook-service"
CERT_SECRET = "kueue-webhook-server-cert"
# The names its certificate management looks for (derived from the Service's name).
WEBHOOK_CONFIGURATIONS = {
    "MutatingWebhookConfiguration": "kueue-mutating-webhook-configuration",
    "ValidatingWebhookConfiguration": "kueue-validating-webhook-configuration",
}
# The integrations it manages here, and so the webhooks it serves: batch/v1 Jobs, and its own.
WEBHOOK_GROUPS = {"batch", "kueue.x-k8s.io"}
READY_SECONDS = 120


def _service_ref(reference: dict) -> dict:
    return {**reference, "namespace": NAMESPACE, "name": SERVICE}


def crds(source: Path) -> list[dict]:
    """Its CRDs, those with a conversion webhook pointed at its Service (as its manifests do)."""
    converted = set()
    for patch in (source / "config/components/crd/patches").glob("webhook_in_*.yaml"):
        converted.add(yaml.safe_load(patch.read_text())["metadata"]["name"])
    found = []
    for path in sorted((source / "config/components/crd/bases").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["metadata"]["name"] in converted:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"service": _service_ref({"path": "/convert"})},
                    "conversionReviewVersions": ["v1"],
                },
            }
        found.append(crd)
    return found


def webhook_configurations(source: Path) -> list[dict]:
    """Its admission webhooks for the kinds it manages here, named and routed as its
    certificate management expects."""
    found = []
    for configuration in yaml.safe_load_all(
        (source / "config/components/webhook/manifests.yaml").read_text()
    ):
        kept = []
        for webhook in configuration["webhooks"]:
            groups = {group for rule in webhook["rules"] for group in rule["apiGroups"]}
            if groups <= WEBHOOK_GROUPS:
                service = webhook["clientConfig"]["service"]
                webhook["clientConfig"]["service"] = _service_ref(service)
                kept.append(webhook)
        configuration["metadata"]["name"] = WEBHOOK_CONFIGURATIONS[configuration["kind"]]
        configuration["webhooks"] = kept
        found.append(configuration)
    return found


def _routing(host: str, port: int) -> list[dict]:
    """The namespace, the empty Secret its certificates go into, and its webhook Service with
    this machine's `host`:`port` as the one endpoint."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CERT_SECRET, "namespace": NAMESPACE},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": SERVICE,
                "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": SERVICE},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
    ]


def manager_configuration(
    host: str, webhook_port: int, health_port: int, visibility_port: int, certs: Path
) -> dict:
    """Every port its own, on loopback where nothing else calls it: two test workers each run
    a Kueue (its visibility server's default, 0.0.0.0:8082, made the second one fail)."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "visibilityServer": {"bindAddress": "127.0.0.1", "bindPort": visibility_port},
        "webhook": {"host": host, "port": webhook_port, "certDir": str(certs)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": SERVICE,
            "webhookSecretName": CERT_SECRET,
        },
        "integrations": {"frameworks": ["batch/job"]},
    }


def apply_objects(plane: ControlPlane, objects: list[dict], file: Path) -> None:
    file.write_text(yaml.safe_dump_all(objects))
    done = plane.kubectl("apply", "--server-side", "-f", str(file))
    if done.returncode != 0:
        raise RuntimeError(f"kubectl apply {file.name}: {done.stderr}")


def _mount_certificates(plane: ControlPlane, certs: Path) -> bool:
    """Do the kubelet's part for a manager not in a pod: its certificate management writes the
    serving certificate into the Secret and waits for it in its certificate folder (where the
    pod would mount that Secret). True once they are there."""
    if (certs / "tls.crt").exists():
        return True
    data = (plane.admin().get("Secret", NAMESPACE, CERT_SECRET) or {}).get("data") or {}
    if not {"ca.crt", "tls.crt", "tls.key"} <= data.keys():
        return False
    certs.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "tls.key", "tls.crt"):  # the one it waits for last
        (certs / name).write_bytes(base64.b64decode(data[name]))
    return True


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return answer.status == 200
    except (OSError, ssl.SSLError):
        return False


@contextlib.contextmanager
def running_kueue(plane: ControlPlane, workdir: Path) -> Iterator[None]:
    """Kueue installed in the control plane and its manager running until the block ends (its
    webhooks then removed; its CRDs and objects stay)."""
    manager, source = ensure_kueue(), kueue_source()
    workdir.mkdir(parents=True, exist_ok=True)
    host, webhook_port, health_port = ensure_host_address(), free_port(), free_port()
    visibility_port = free_port()
    apply_objects(plane, _routing(host, webhook_port), workdir / "routing.yaml")
    apply_objects(plane, crds(source), workdir / "crds.yaml")
    apply_objects(plane, webhook_configurations(source), workdir / "webhooks.yaml")
    config = workdir / "config.yaml"
    certs = workdir / "certs"
    config.write_text(
        yaml.safe_dump(
            manager_configuration(host, webhook_port, health_port, visibility_port, certs)
        )
    )
    log = workdir / "kueue.log"
    process = start([str(manager), f"--config={config}", f"--kubeconfig={plane.kubeconfig}"], log)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not (_mount_certificates(plane, certs) and _ready(health_port)):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Kueue's manager did not become ready:\n{tail}")
            time.sleep(0.5)
        yield
    finally:
        # Its webhooks go first: with nothing to answer them, they would refuse every Job.
        for kind, name in WEBHOOK_CONFIGURATIONS.items():
            plane.kubectl("delete", kind.lower(), name, "--ignore-not-found")
        stop(process)

"""A real Kubernetes control plane for the tests: etcd, kube-apiserver (TLS, RBAC and Node
authorizers, default admission plugins, service-account issuer and keys, token credentials for
an admin and for test users with no rights of their own), kube-controller-manager (job,
garbage-collector, namespace, service-account-token and the other default controllers),
kube-scheduler, and kubectl to drive it. Pods run on a real node (node.py; the operator
benchmark's many instant pods on the node agent, node_agent.py), which reaches the API server
at the host address of node_network.py and holds a node identity of NODE_NAMES; the API server
reaches its kubelet with a client certificate."""

import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import kopf
import kubernetes
import urllib3

from fluxlora_kube.client import Kube
from fluxlora_localcluster.binaries import ensure_kubernetes
from fluxlora_localcluster.kubeconfig import write_kubeconfig
from fluxlora_localcluster.minio import free_port
from fluxlora_localcluster.node_network import ensure_host_address
from fluxlora_localcluster.processes import ServerFailed, Starting, ensure_running, start, stop

START_TIMEOUT_SECONDS = 120
TEST_USERS = ("alice", "bob")  # authenticated, in no group with rights: RBAC grants them all
NODE_NAMES = ("gpu-node-1", "gpu-node-2")  # the kubelets' identities (group system:nodes)
KUBE_PROXY_USER = "system:kube-proxy"  # bound to system:node-proxier by the default policy
DNS_USER = "system:coredns"  # the cluster DNS: reads Services, EndpointSlices and namespaces
DNS_RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:coredns"}}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{DNS_USER}"}}]
"""


@dataclass(frozen=True)
class ControlPlane:
    server: str
    ca_file: Path
    admin_token: str
    kubeconfig: Path
    signing_key: Path
    kubectl_binary: Path
    user_tokens: dict[str, str]
    node_tokens: dict[str, str]
    proxy_token: str
    dns_token: str
    kubelet_client_ca: Path  # the CA of the API server's client certificate for kubelets

    def api_client(self) -> kubernetes.client.ApiClient:
        """An official-client ApiClient of this plane with the admin's credentials."""
        configuration = kubernetes.client.Configuration(host=self.server)
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"BearerToken": self.admin_token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return kubernetes.client.ApiClient(configuration)

    def kopf_connection(self) -> kopf.ConnectionInfo:
        """The admin's credentials as kopf's login handler returns them."""
        return kopf.ConnectionInfo(
            server=self.server, ca_path=str(self.ca_file), token=self.admin_token, scheme="Bearer"
        )

    def admin(self) -> Kube:
        """The operator's own client layer over `api_client()`."""
        return Kube(self.api_client())

    def kubectl(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
        """Run kubectl against this plane, as the admin or as one of the test users."""
        command = [str(self.kubectl_binary), "--kubeconfig", str(self.kubeconfig)]
        if user is not None:
            command += ["--token", self.user_tokens[user]]
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=120, check=False
        )


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _kubelet_client_certificate(certs: Path) -> tuple[Path, Path, Path]:
    """A CA that kubelets trust for clients, and the API server's certificate from it (in
    system:masters, so a kubelet's authorization webhook allows logs and exec)."""
    certs.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, request, certificate = (
        certs / name
        for name in (
            "kubelet-client-ca.key",
            "kubelet-client-ca.crt",
            "kubelet-client.key",
            "kubelet-client.csr",
            "kubelet-client.crt",
        )
    )
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=fluxlora-test-kubelet-client-ca",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        "-keyout",
        str(key),
        "-out",
        str(request),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        str(certificate),
    )
    return ca, certificate, key


@contextmanager
def _process(command: list[str], log: Path) -> Iterator[subprocess.Popen]:
    process = start(command, log)
    try:
        yield process
    finally:
        stop(process)


def _wait(url: str, token: str, ca_file: Path, servers: list[Starting]) -> None:
    pool = urllib3.PoolManager(ca_certs=str(ca_file), retries=False, timeout=3)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for server in servers:
            ensure_running(*server)
        try:
            response = pool.request("GET", url, headers={"Authorization": f"Bearer {token}"})
            if response.status == 200:
                return
        except (urllib3.exceptions.HTTPError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} was not ready within {START_TIMEOUT_SECONDS}s")


@contextmanager
def running_control_plane(workdir: Path) -> Iterator[ControlPlane]:
    binaries = ensure_kubernetes()
    workdir.mkdir(parents=True, exist_ok=True)
    certs = workdir / "certs"
    key = workdir / "service-account.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = workdir / "service-account.pub"
    subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(public)],
        check=True,
        capture_output=True,
    )
    admin_token = secrets.token_hex(16)
    user_tokens = {user: secrets.token_hex(16) for user in TEST_USERS}
    node_tokens = {node: secrets.token_hex(16) for node in NODE_NAMES}
    proxy_token, dns_token = secrets.token_hex(16), secrets.token_hex(16)
    (workdir / "tokens.csv").write_text(
        f"{admin_token},admin,admin,system:masters\n"
        + "".join(f"{token},{user},{user}\n" for user, token in user_tokens.items())
        + "".join(
            f'{token},system:node:{node},{node},"system:nodes"\n'
            for node, token in node_tokens.items()
        )
        + f"{proxy_token},{KUBE_PROXY_USER},{KUBE_PROXY_USER}\n"
        + f"{dns_token},{DNS_USER},{DNS_USER}\n"
    )
    kubelet_ca, kubelet_client, kubelet_client_key = _kubelet_client_certificate(certs)
    host = ensure_host_address()
    etcd_client, etcd_peer, api_port = free_port(), free_port(), free_port()
    # the serving certificate names the advertised address (not loopback): every client uses it
    server = f"https://{host}:{api_port}"
    ca_file = certs / "apiserver.crt"
    etcd_log, apiserver_log = workdir / "etcd.log", workdir / "kube-apiserver.log"

    with ExitStack() as stack:
        etcd = stack.enter_context(
            _process(
                [
                    str(binaries["etcd"]),
                    "--data-dir", str(workdir / "etcd"),
                    "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
                    "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
                    "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                    "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
                    "--unsafe-no-fsync",
                ],
                etcd_log,
            )
        )  # fmt: skip
        apiserver = stack.enter_context(
            _process(
                [
                    str(binaries["kube-apiserver"]),
                    "--etcd-servers", f"http://127.0.0.1:{etcd_client}",
                    # the host address is on loopback: reached from here, from nodes and from pods
                    "--bind-address", host,
                    "--advertise-address", host,
                    "--secure-port", str(api_port),
                    "--cert-dir", str(certs),
                    "--token-auth-file", str(workdir / "tokens.csv"),
                    "--authorization-mode", "Node,RBAC",
                    "--service-account-issuer", "https://kubernetes.default.svc",
                    "--service-account-key-file", str(public),
                    "--service-account-signing-key-file", str(key),
                    "--service-cluster-ip-range", "10.96.0.0/24",
                    # Webhooks are called at their Service's endpoints, not its cluster IP
                    # (which only nodes route): a webhook may run on this machine.
                    "--enable-aggregator-routing=true",
                    "--kubelet-preferred-address-types", "InternalIP",
                    "--kubelet-client-certificate", str(kubelet_client),
                    "--kubelet-client-key", str(kubelet_client_key),
                ],
                apiserver_log,
            )
        )  # fmt: skip
        starting = [
            ("etcd", etcd, etcd_log),
            ("kube-apiserver", apiserver, apiserver_log),
        ]
        try:
            while not ca_file.exists():  # written as the server starts
                for started in starting:
                    ensure_running(*started)
                time.sleep(0.1)
            _wait(f"{server}/readyz", admin_token, ca_file, starting)
        except ServerFailed:
            # An API server without its etcd ignores SIGTERM until stop()'s grace runs out: the
            # person waiting hears why now, not 20 s later. Neither has served anything yet.
            for _, process, _ in starting:
                process.kill()
            raise
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", server, admin_token, ca_file)
        (workdir / "dns-rbac.yaml").write_text(DNS_RBAC)
        subprocess.run(
            [str(binaries["kubectl"]), "--kubeconfig", str(kubeconfig), "apply", "-f",
             str(workdir / "dns-rbac.yaml")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        stack.enter_context(
            _process(
                [
                    str(binaries["kube-controller-manager"]),
                    "--kubeconfig", str(kubeconfig),
                    "--leader-elect=false",
                    "--secure-port", "0",
                    "--service-account-private-key-file", str(key),
                    "--root-ca-file", str(ca_file),
                    "--use-service-account-credentials=false",
                    "--controllers", "*",
                ],
                workdir / "kube-controller-manager.log",
            )
        )  # fmt: skip
        stack.enter_context(
            _process(
                [
                    str(binaries["kube-scheduler"]),
                    "--kubeconfig", str(kubeconfig),
                    "--leader-elect=false",
                    "--secure-port", "0",
                ],
                workdir / "kube-scheduler.log",
            )
        )  # fmt: skip
        yield ControlPlane(
            server,
            ca_file,
            admin_token,
            kubeconfig,
            key,
            binaries["kubectl"],
            user_tokens,
            node_tokens,
            proxy_token,
            dns_token,
            kubelet_ca,
        )

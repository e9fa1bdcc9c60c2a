"""urllib3 connection pools that connect only where the address rules allow
(fluxlora_net.addresses) and only until the download's deadline.

The host name is resolved and every address it resolves to is checked right before connecting,
and the socket connects to the checked address itself: a DNS answer that changes between check
and use (rebinding) cannot slip through, and a refused server sees no connection at all. The
request still carries the URL's host name (Host header, TLS SNI and certificate check)."""

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context

from fluxlora_net.addresses import Refusal, parse_address, refusal


class RefusedAddress(Exception):
    """A host resolved to an address the rules refuse. Not an OSError on purpose: urllib3
    neither wraps nor retries it, so it reaches the caller as it is."""

    def __init__(self, host: str, refused: Refusal) -> None:
        super().__init__(f"{host} resolves to {refused.address}, {refused.kind}")
        self.host = host
        self.refusal = refused


class DownloadGuard:
    """One download's rules: the allowed non-public networks, and a deadline after which every
    socket it opened is shut down, so no read can outlast it (a server trickling one byte a
    minute resets every socket timeout). Use as a context manager around the download."""

    def __init__(self, allowed_networks: Iterable[str], seconds: float) -> None:
        self.allowed = tuple(ipaddress.ip_network(network) for network in allowed_networks)
        self.seconds = seconds
        self.expired = False
        self._deadline = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True

    def __enter__(self) -> "DownloadGuard":
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()

    def remaining(self) -> float:
        return self._deadline - time.monotonic()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _shutdown(sock)

    def connect(
        self,
        host: str,
        port: int,
        timeout: object,
        options: Sequence[tuple[int, int, int | bytes]] | None,
    ) -> socket.socket:
        """A TCP connection to `host`, refused (RefusedAddress) before any connection is
        attempted if any address the name resolves to is not allowed."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        for *_, sockaddr in infos:
            refused = refusal(parse_address(str(sockaddr[0])), self.allowed)
            if refused is not None:
                raise RefusedAddress(host, refused)
        error = OSError(f"{host} has no address")
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            self.track(sock)
            try:
                for option in options or ():
                    sock.setsockopt(*option)
                if isinstance(timeout, int | float):
                    sock.settimeout(timeout)
                sock.connect(sockaddr)  # the checked address, not the name again
                return sock
            except OSError as failure:
                sock.close()
                error = failure
        raise error

    def ssl_context(self) -> ssl.SSLContext:
        """The default verifying context, whose sockets the deadline can also shut down while
        their handshake is still running."""
        context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
        context.load_default_certs()
        guard = self

        class TrackedSSLSocket(ssl.SSLSocket):
            def do_handshake(self, *args, **kwargs) -> None:
                guard.track(self)
                super().do_handshake(*args, **kwargs)

        context.sslsocket_class = TrackedSSLSocket
        return context


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown: it wakes a blocked read in another thread, and on a TLS
    # socket it does not tear down the TLS state under that read's feet.
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Guarded(HTTPConnection):
    def __init__(self, *args: Any, guard: DownloadGuard, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        # urllib3's own _new_conn, with our connect and its exceptions.
        host = str(getattr(self, "_dns_host", None) or self.host)
        try:
            return self._guard.connect(host, self.port, self.timeout, self.socket_options)
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error
        except TimeoutError as error:
            raise ConnectTimeoutError(self, f"connection to {self.host} timed out") from error
        except OSError as error:
            raise NewConnectionError(self, f"cannot connect: {error}") from error


class GuardedHTTPConnection(_Guarded, HTTPConnection):
    pass


class GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    pass


def guarded_pool(
    guard: DownloadGuard, scheme: str, host: str, port: int | None, timeout: float
) -> HTTPConnectionPool:
    """A pool for one origin whose connections obey `guard`; it neither retries nor
    redirects (the caller does both, checking each hop)."""
    if scheme == "https":
        pool: HTTPConnectionPool = HTTPSConnectionPool(
            host, port, timeout=timeout, retries=False, guard=guard, ssl_context=guard.ssl_context()
        )
        pool.ConnectionCls = GuardedHTTPSConnection
    else:
        pool = HTTPConnectionPool(host, port, timeout=timeout, retries=False, guard=guard)
        pool.ConnectionCls = GuardedHTTPConnection
    return pool

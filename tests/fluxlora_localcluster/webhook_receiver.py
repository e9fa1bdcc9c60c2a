"""A webhook receiver for the tests and the demo: answers the statuses it is given in turn (the
last one repeats) and keeps every request it got."""

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fluxlora_localcluster.minio import free_port


@dataclass
class Receiver:
    statuses: list[int]
    url: str = ""
    requests: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)

    def wait(self, count: int, timeout: float) -> bool:
        """Whether `count` requests arrived within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return len(self.requests) >= count


@contextlib.contextmanager
def webhook_receiver(*statuses: int, host: str = "127.0.0.1") -> Iterator[Receiver]:
    """A receiver at http://<host>:<free port>/hooks/training (200 unless told otherwise)."""
    got = Receiver(list(statuses) or [200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {name.lower(): value for name, value in self.headers.items()}
            got.requests.append((time.monotonic(), headers, body))
            status = got.statuses[min(len(got.requests), len(got.statuses)) - 1]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, free_port()), Handler)
    got.url = f"http://{host}:{server.server_port}/hooks/training"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()

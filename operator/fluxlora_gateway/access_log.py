"""The gateway's access log: method, path, status, size and time, and nothing a caller could
use: no headers (the key), no query string (a webhook URL may carry its receiver's token), and
no upload ticket (the URL alone allows an upload)."""

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from fluxlora_gateway.uploads import TICKETS_PATH


def shown_path(path: str) -> str:
    """`path` with any upload ticket in it hidden."""
    if path.startswith(TICKETS_PATH + "/"):
        return TICKETS_PATH + "/(ticket)"
    return path


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            shown_path(request.path),
            response.status,
            response.body_length,
            time,
        )

"""The web page for the people who train (`/ui/`): static files, no build step. The page holds
the API key in the browser's session storage and calls the JSON API with it as a Bearer header,
so it has exactly the key's rights; no cookies, so no cross-site request can act for anyone."""

from pathlib import Path

from aiohttp import web

PAGE_PATH = "/ui/"
STATIC_PATH = "/ui/static"
WEB_FOLDER = Path(__file__).with_name("web")
# Only the page's own files run; images are the API's (fetched with the key, shown as blobs).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_FOLDER / "index.html", headers=SECURITY_HEADERS)


async def to_page(request: web.Request) -> web.Response:
    raise web.HTTPFound(PAGE_PATH)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith(PAGE_PATH):
        response.headers.update(SECURITY_HEADERS)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", to_page)
    app.router.add_get(PAGE_PATH, page)
    app.router.add_static(STATIC_PATH, WEB_FOLDER / "static")
    app.on_response_prepare.append(_headers)

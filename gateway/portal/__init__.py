"""The portal: web pages served by the gateway beside its API (docs/portal.md)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from gateway.portal.session import SessionKeys
from gateway.portal.views import Portal, PortalDeps, hardened, routes

__all__ = ["PortalDeps", "SessionKeys", "portal_app"]

_CSS = resources.files("gateway.portal").joinpath("static/portal.css").read_bytes()


async def _stylesheet(request: web.Request) -> web.Response:
    return web.Response(
        body=_CSS, content_type="text/css", headers={"Cache-Control": "max-age=3600"}
    )


def portal_app(deps: PortalDeps, max_body: int) -> web.Application:
    """The portal as an aiohttp sub-application, to be mounted at ``/portal``."""
    app = web.Application(middlewares=[hardened], client_max_size=max_body)
    app.add_routes(routes(Portal(deps)))
    app.router.add_get("/static/portal.css", _stylesheet)
    return app

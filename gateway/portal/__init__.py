"""The portal: web pages served by the gateway beside its API (docs/portal.md)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from gateway.portal.common import CommonPages
from gateway.portal.operator import OperatorPages
from gateway.portal.pages import PortalDeps, error_pages, hardened, switch_language, templates
from gateway.portal.partner import PartnerPages
from gateway.portal.partners_admin import PartnerAdminPages
from gateway.portal.session import SessionKeys
from gateway.portal.signin import SignIn
from gateway.portal.tasks import TaskPages
from gateway.portal.tasks_aanvraag import RequestPages
from gateway.portal.tasks_declaratie import DeclarationPages
from gateway.portal.tasks_wijziging import ChangePages

__all__ = ["PortalDeps", "SessionKeys", "portal_app"]

_CSS = resources.files("gateway.portal").joinpath("static/portal.css").read_bytes()


async def _stylesheet(request: web.Request) -> web.Response:
    return web.Response(
        body=_CSS, content_type="text/css", headers={"Cache-Control": "max-age=3600"}
    )


def portal_app(deps: PortalDeps, max_body: int) -> web.Application:
    """The portal as an aiohttp sub-application, to be mounted at ``/portal``."""
    environment = templates()
    signin = SignIn(deps, environment)
    partner = PartnerPages(deps, environment)
    common = CommonPages(deps, environment)
    operator = OperatorPages(deps, environment)
    tasks = TaskPages(deps, environment)
    claims = DeclarationPages(deps, environment)
    changes = ChangePages(deps, environment)
    requests = RequestPages(deps, environment)
    partner_admin = PartnerAdminPages(deps, environment)
    app = web.Application(middlewares=[hardened, error_pages(common)], client_max_size=max_body)
    app.add_routes(
        [
            web.get("/", signin.home),
            web.get("/signin", signin.signin_page),
            web.post("/signin", signin.signin),
            web.post("/signout", signin.signout),
            web.get("/inbox", partner.inbox),
            web.get("/inbox/{id}", partner.download),
            web.get("/inbox/{id}/ack", partner.acknowledge_page),
            web.post("/inbox/{id}/ack", partner.acknowledge),
            web.get("/taken/{id}/bevestigen", tasks.confirm_page),
            web.post("/taken/{id}/bevestigen", tasks.confirm),
            web.get("/taken/{id}/{task:start|stop}", tasks.products_page),
            web.post("/taken/{id}/{task:start|stop}", tasks.products),
            web.get("/taken/{id}/declareren", claims.declaration_page),
            web.post("/taken/{id}/declareren", claims.declaration),
            web.get("/taken/{id}/wijzigen", changes.change_page),
            web.post("/taken/{id}/wijzigen", changes.change),
            web.get("/taken/{id}/aanvragen", requests.request_page),
            web.post("/taken/{id}/aanvragen", requests.ask),
            web.get("/sent", partner.sent),
            web.get("/upload", partner.upload_page),
            web.post("/upload", partner.upload),
            web.get("/messages/{id}", common.message),
            web.post("/messages/{id}/bsn", common.reveal_bsn),
            web.get("/archive", partner.archive),
            web.get("/overdue", common.overdue),
            web.get("/figures", common.figures),
            web.get("/queues", operator.queues),
            web.get("/dead-letters", operator.dead_letters),
            web.get("/replay/{id}", operator.replay_page),
            web.post("/replay/{id}", operator.replay),
            web.get("/audit", operator.audit_page),
            web.post("/audit", operator.audit_search),
            web.get("/partners", partner_admin.list_page),
            web.get("/partners/{id}", partner_admin.detail),
            web.post("/partners/{id}", partner_admin.act),
            web.get("/static/portal.css", _stylesheet),
            web.get("/taal/{lang}", switch_language),
        ]
    )
    return app

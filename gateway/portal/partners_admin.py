"""The operator's Partners page: every partner with its status, tokens and certificate, and per
partner: disable or enable it, issue or revoke a token (shown once), register its certificate.

Each change goes through the same path as ``ggk partners`` (gateway/partnerops.py inside
gateway/partnerfile.py's checked, atomic write), is audited under the operator's sign-in
with the partner's id first in the outcome, and on Kafka is published for every process; the
gateway takes it up within seconds (gateway/web/reload.py). Operator only, CSRF-checked like
every form of the portal. Text for clerks: Dutch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from gateway import partnerfile, partnerops
from gateway.audit import AuditEvent
from gateway.broker.base import StorageError
from gateway.partnerfile import PartnerFileError
from gateway.portal.explain import N_
from gateway.portal.pages import Pages, Visitor
from routing.partners import PARTNER_ID, TOKEN_ID, PartnerRegistry, RegistryError

log = structlog.get_logger("ggk.portal")


class PartnerAdminPages(Pages):
    def _registry(self) -> PartnerRegistry:
        """The partners as the file says now (a change just made shows at once, before the
        gateway's watcher has taken it up)."""
        path = self.deps.partners_file
        if path is None:
            return self.deps.partners
        try:
            return PartnerRegistry.load(path)
        except RegistryError:
            return self.deps.partners

    def _operator(self, request: web.Request) -> Visitor | web.StreamResponse:
        visitor = self.visitor(request)
        if visitor is None or not visitor.admin:
            return self.denied(request, visitor)
        return visitor

    async def list_page(self, request: web.Request) -> web.StreamResponse:
        visitor = self._operator(request)
        if not isinstance(visitor, Visitor):
            return visitor
        rows = [partnerops.summary(p) for p in self._registry().all()]
        return self.render(request, "partners.html", visitor=visitor, rows=rows)

    async def detail(self, request: web.Request) -> web.StreamResponse:
        visitor = self._operator(request)
        if not isinstance(visitor, Visitor):
            return visitor
        return self._detail(request, visitor, request.match_info["id"])

    def _detail(
        self,
        request: web.Request,
        visitor: Visitor,
        partner_id: str,
        *,
        status: int = 200,
        said: str | None = None,
        token: str | None = None,
        certificate: partnerops.Certificate | None = None,
    ) -> web.StreamResponse:
        partner = self._registry().get(partner_id) if PARTNER_ID.fullmatch(partner_id) else None
        if partner is None:
            return self._missing(request, visitor)
        return self.render(
            request,
            "partner_admin.html",
            status,
            visitor=visitor,
            p=partnerops.summary(partner),
            said=said,
            token=token,
            certificate=certificate,
        )

    async def act(self, request: web.Request) -> web.StreamResponse:
        visitor = self._operator(request)
        if not isinstance(visitor, Visitor):
            return visitor
        data = await self.form(request, visitor)
        if isinstance(data, web.Response):
            return data
        partner_id = request.match_info["id"]
        path = self.deps.partners_file
        if path is None or not PARTNER_ID.fullmatch(partner_id):
            return self._missing(request, visitor)
        what = str(data.get("action", ""))
        shown: dict[str, Any] = {}
        try:
            action, change = self._change(what, partner_id, data, shown)
        except PartnerFileError as exc:
            return self._refused(request, visitor, partner_id, str(exc))
        outcome: list[str] = []

        def edit() -> None:
            with partnerfile.edit(path) as raw:
                outcome.append(change(raw))

        try:
            await asyncio.to_thread(edit)
        except PartnerFileError as exc:
            return self._refused(request, visitor, partner_id, str(exc))
        if self.deps.publish_partners is not None:
            try:
                await self.deps.publish_partners(path.read_bytes())
            except StorageError:
                log.error("portal.partners_not_published", partner=partner_id)
        try:
            await self.deps.broker.audit_event(
                AuditEvent(
                    action=action,
                    actor=f"portal operator@{request.remote}",
                    origin=request.remote or "",
                    outcome=f"{partner_id}: {outcome[0]}",
                )
            )
        except StorageError:
            log.error("audit.write_failed", action=action)
        log.info("portal.partner_changed", partner=partner_id, action=action)
        return self._detail(
            request,
            visitor,
            partner_id,
            said=self.language(request).gettext(DONE[what]),
            token=shown.get("token"),
            certificate=shown.get("certificate"),
        )

    def _missing(self, request: web.Request, visitor: Visitor) -> web.Response:
        t = self.language(request)
        return self.notice(
            request,
            visitor,
            404,
            t.gettext("Niet gevonden"),
            t.gettext("Deze partner bestaat niet."),
        )

    def _refused(
        self, request: web.Request, visitor: Visitor, partner_id: str, reason: str
    ) -> web.StreamResponse:
        """The partner's page again, saying why nothing changed (the reason as the command
        line gives it: it names the setting or value)."""
        said = self.language(request).gettext("Niet gewijzigd: %(reason)s") % {"reason": reason}
        return self._detail(request, visitor, partner_id, status=400, said=said)

    def _change(
        self, what: str, partner_id: str, data: dict[str, Any], shown: dict[str, Any]
    ) -> tuple[str, Callable[[dict[str, Any]], str]]:
        """The audit action and the change to make for the form's ``action``."""
        if what in ("disable", "enable"):
            word = "disabled" if what == "disable" else "enabled"

            def toggle(raw: dict[str, Any]) -> str:
                partnerops.set_disabled(raw, partner_id, what == "disable")
                return word

            return f"partner_{word}", toggle
        if what == "issue":

            def issue(raw: dict[str, Any]) -> str:
                issued = partnerops.issue_token(raw, partner_id)
                shown["token"] = issued.token
                return f"token {issued.token_id} issued"

            return "partner_token_issued", issue
        if what == "revoke":
            token_id = str(data.get("token", ""))
            if not TOKEN_ID.fullmatch(token_id):
                raise PartnerFileError("no such token")

            def revoke(raw: dict[str, Any]) -> str:
                partnerops.revoke_token(raw, partner_id, token_id)
                return f"token {token_id} revoked"

            return "partner_token_revoked", revoke
        if what == "certificate":
            pem = str(data.get("pem", "")).encode("utf-8", "replace")

            def register(raw: dict[str, Any]) -> str:
                cert = partnerops.register_certificate(raw, partner_id, pem)
                shown["certificate"] = cert
                return f"certificate sha256 {cert.sha256[:16]} registered"

            return "partner_certificate_registered", register
        raise PartnerFileError("unknown action")


DONE = {
    "disable": N_("De partner is uitgeschakeld: zijn tokens en certificaat worden geweigerd."),
    "enable": N_("De partner is weer ingeschakeld."),
    "issue": N_("Een nieuw token is uitgegeven."),
    "revoke": N_("Het token is ingetrokken."),
    "certificate": N_("Het certificaat is geregistreerd."),
}

"""Ticket authentication: request a one-time ticket and send the browser to Qlik with it.

Two flows:

* portal-initiated: :meth:`TicketAuthenticator.login` redirects to the hub (or an
  allowed target) with ``qlikTicket``;
* the virtual proxy's authentication module: Qlik sends an unauthenticated browser to
  the portal with ``targetId`` and ``proxyRestUri``; :meth:`module_login` requests the
  ticket from that node *only if it is configured* and redirects to the returned
  ``TargetUri`` only if its host is allowed (the copied snippets trust both).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from ..exceptions import RedirectError
from ..identity import QlikUser
from ..qps import TARGET_ID_RE, QpsClient, Ticket, normalise_node
from ..redirects import RedirectPolicy, normalise_base_url, origin_of, strip_tickets
from .base import Redirect

__all__ = ["TicketAuthenticator", "add_ticket"]

log = logging.getLogger("qlikauth.ticket")


def add_ticket(url: str, ticket: str) -> str:
    """``url`` with ``qlikTicket=<ticket>`` added to its query (before any fragment).

    Any ticket-like parameter already in ``url`` is removed first
    (:func:`~qlikauth.redirects.strip_tickets`): Qlik redeems the first ticket it finds, so
    one smuggled into a target would sign the user in as someone else.
    """
    parts = urlsplit(strip_tickets(url))
    param = f"qlikTicket={quote(ticket, safe='')}"
    query = f"{parts.query}&{param}" if parts.query else param
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))


class TicketAuthenticator:
    """Sign users in with QPS tickets.

    :param qps: the :class:`QpsClient` for the ticket virtual proxy.
    :param hub_url: where users land by default, e.g. ``https://qlik.example.com/portal/hub/``.
    :param allowed_targets: other origins users may be sent to (``https://qs2.example.com``).
    :param node_hub_urls: for sites whose nodes are reached by different names, the hub URL
        of each QPS node: a ticket is redeemed where it was issued.
    :param relative_prefix: relative targets must stay under this path (``"/portal/"``, the
        virtual proxy's own), see :class:`~qlikauth.redirects.RedirectPolicy`.
    """

    def __init__(
        self,
        qps: QpsClient,
        hub_url: str,
        allowed_targets: Iterable[str] = (),
        *,
        node_hub_urls: Mapping[str, str] | None = None,
        relative_prefix: str = "/",
    ) -> None:
        self.qps = qps
        normalise_base_url(hub_url, "hub_url")  # validates
        self.hub_url = hub_url
        self.node_hub_urls = {normalise_node(k): v for k, v in (node_hub_urls or {}).items()}
        allowed = list(allowed_targets) + list(self.node_hub_urls.values())
        self.policy = RedirectPolicy(allowed, default=hub_url, relative_prefix=relative_prefix)

    def _landing_for(self, ticket: Ticket, target: str) -> str:
        hub = self.node_hub_urls.get(ticket.node)
        if hub is None:
            return target
        if origin_of(target) == origin_of(self.hub_url):
            t, h = urlsplit(target), urlsplit(hub)
            return urlunsplit((h.scheme, h.netloc, t.path, t.query, t.fragment))
        return target

    def login(self, user: QlikUser, target: str | None = None) -> Redirect:
        """Request a ticket and return the redirect that redeems it.

        ``target`` (a relative path or a URL on an allowed origin) is checked first:
        a bad one raises :class:`~qlikauth.RedirectError` before any QPS call.
        """
        landing = self.policy.check(target) if target else self.hub_url
        ticket = self.qps.request_ticket(user)
        return Redirect(
            add_ticket(self._landing_for(ticket, landing), ticket.ticket), node=ticket.node
        )

    def check_module_request(self, proxy_rest_uri: str | None, target_id: str | None) -> str:
        """Vet the query of a request to the authentication module; return the QPS node.

        Integrations call this first, before they even look for a signed-in user, so a
        forged ``proxyRestUri`` or ``targetId`` is refused without a login round trip.
        Raises :class:`~qlikauth.RedirectError` when either is missing or malformed, or
        when ``proxy_rest_uri`` is not a configured node and virtual proxy.
        """
        if not target_id or not proxy_rest_uri:
            raise RedirectError(
                "targetId and proxyRestUri are missing: this address is for Qlik's virtual "
                "proxy to send browsers to, not for direct visits."
            )
        if not isinstance(target_id, str) or not TARGET_ID_RE.match(target_id):
            raise RedirectError("targetId is malformed: Qlik sends a GUID; refused.")
        return self.qps.node_for_rest_uri(proxy_rest_uri)

    def module_login(self, user: QlikUser, proxy_rest_uri: str, target_id: str) -> Redirect:
        """Serve the virtual proxy's authentication module redirect.

        Raises :class:`~qlikauth.RedirectError` as :meth:`check_module_request` does
        (nothing is sent anywhere then). A ``TargetUri`` on a host that is not allowed
        is replaced by the hub URL.
        """
        node = self.check_module_request(proxy_rest_uri, target_id)
        ticket = self.qps.request_ticket(user, target_id=target_id, node=node)
        target = ticket.target_uri
        if target and not self.policy.is_allowed(target):
            log.warning(
                "QPS returned a TargetUri on a host that is not allowed (%s); sending the user "
                "to the hub instead. Add the host to allowed targets if it is yours.",
                urlsplit(target).netloc[:100],
            )
            target = None
        landing = self.policy.check(target) if target else self._landing_for(ticket, self.hub_url)
        return Redirect(add_ticket(landing, ticket.ticket), node=node)

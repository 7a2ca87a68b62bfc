"""The gateway's HTTP face: StUF-GGk SOAP ingress, the REST API, health and metrics.

One aiohttp application; TLS with optional client certificates (mutual TLS identifies a
partner by its certificate fingerprint), bearer tokens as the alternative. Handlers are thin:
they authenticate, translate HTTP to the :class:`~gateway.ingest.Ingress` and back.

Modules, bottom to top (each imports only those before it): ``wiring`` (the Gateway and its
build), ``answers`` (refusals per endpoint), ``identify`` (who is calling, rates), ``body``
(admitted bodies, work off the loop), ``soap_endpoint``, ``rest``, ``ops`` (health, metrics),
``app`` (routes, TLS, run).
"""

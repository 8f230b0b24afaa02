"""The status page's HTTP server: watcherd's one server (:mod:`watcherd.httpserver`) with the
page's rules.

Forms carry an id and a token, so a body is small (16 KiB) and the whole request has 15 s;
GET, HEAD, OPTIONS and DELETE may come without a body; errors are plain text; every answer
says not to cache, sniff or frame it. What to answer is the application's business
(:mod:`watcherd.web.app`).
"""

from __future__ import annotations

from watcherd.connections import ConnectionLimits
from watcherd.http11 import HEADER_TIMEOUT
from watcherd.httpserver import Handler, HttpServer, Response, ServerRules, text_response

__all__ = ["PAGE_HEADERS", "REQUEST_TIMEOUT", "HttpServer", "Response", "page_server",
           "text_response"]

# Forms on the page carry an id and a token: a few KB is plenty.
_MAX_BODY = 16 * 1024
# The whole request (head and body) from the connection's start.
REQUEST_TIMEOUT = 15.0
#: Every answer: nothing cached, nothing sniffed, never framed by another site.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def page_server(host: str, port: int, handler: Handler, *,
                request_timeout: float = REQUEST_TIMEOUT,
                header_timeout: float = HEADER_TIMEOUT,
                limits: ConnectionLimits | None = None) -> HttpServer:
    """The page's server on ``host``:``port`` (not started), answering with ``handler``."""
    return HttpServer(host, port, handler, ServerRules(
        name="web", logger="watcherd.web", max_body=_MAX_BODY, request_timeout=request_timeout,
        header_timeout=header_timeout, limits=limits or ConnectionLimits(),
        headers=PAGE_HEADERS))

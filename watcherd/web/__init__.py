"""The local status page and the standard endpoints: /, /metrics, /healthz (issue 16)."""

from watcherd.web.server import WebServer, build, start_web

__all__ = ["WebServer", "build", "start_web"]

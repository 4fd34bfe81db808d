"""Keep-alive after a 304 under waitress 3.0.2 (the version in requirements.txt).

waitress closes the connection after every answer without a Content-Length, and it never sends
one for 304 (or 204), which has no body by definition. A polling script that sends
If-None-Match therefore pays a new TCP connection for every 304. ``install()`` makes waitress's
channels use a task that keeps an HTTP/1.1 connection open after a bodiless answer (unless the
client asked to close it). Pinned: check ``build_response_header`` again before upgrading.
"""

from __future__ import annotations

from waitress.channel import HTTPChannel
from waitress.task import WSGITask


class KeepAliveTask(WSGITask):
    """WSGITask that does not close a keep-alive connection after a 1xx/204/304 answer."""

    def build_response_header(self) -> bytes:
        keep = (
            not self.has_body
            and self.version == "1.1"
            and not getattr(self, "close_on_finish")  # noqa: B009  # waitress is untyped
            and self.request.headers.get("CONNECTION", "").lower() != "close"
        )
        if keep:
            self.close_on_finish = True  # skips waitress's "no length: close" branch ...
        try:
            return super().build_response_header()
        finally:
            if keep:
                self.close_on_finish = False  # ... and the connection stays open


def install() -> None:
    """Make every waitress channel of this process use ``KeepAliveTask``."""
    HTTPChannel.task_class = KeepAliveTask

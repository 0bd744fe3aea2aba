"""uvicorn's h11 protocol with a deadline on receiving each request (``maskfocal serve``).

A connection whose request (headers and body) has not arrived whole
:attr:`~maskfocal.service.ServeSettings.receive_timeout_s` after its first byte (or after the
connection opened) is closed. uvicorn's keep-alive timer stops at a request's first byte, so
without this a client sending one byte at a time (a slowloris) holds its connection, and a
file descriptor, for as long as it likes. uvicorn loads this class by name in each worker.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from maskfocal.service import _quiet_logger, _settings_from_env

RECEIVING = (h11.IDLE, h11.SEND_BODY)  # the client's side while a request is on its way


class ReceivingProtocol(H11Protocol):
    deadline: asyncio.TimerHandle | None = None
    seconds: float | None = None

    def _arm(self) -> None:
        self._disarm()
        if ReceivingProtocol.seconds is None:  # once per worker process
            ReceivingProtocol.seconds = _settings_from_env().receive_timeout_s
        self.deadline = self.loop.call_later(ReceivingProtocol.seconds, self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        if self.conn.their_state in RECEIVING and not self.transport.is_closing():
            _quiet_logger().warning("closed a connection whose request did not arrive in time")
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state not in RECEIVING:
            self._disarm()  # the request is in: the app's own timeout takes over

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

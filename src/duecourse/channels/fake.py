"""A transport that sends nothing, for unit tests and the dispatcher benchmark, beside the real adapters.

It records what it was given and can be told to fail: ``failures`` maps a recipient to the errors to
raise on its next sends, in order (a transient error then success, a permanent error, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from duecourse.channels.base import ChannelError, Outgoing, Receipt, reference_for


@dataclass
class FakeTransport:
    channel: str
    failures: dict[str, list[ChannelError]] = field(default_factory=dict)
    on_send: Callable[[Outgoing], None] | None = None
    sent: list[Outgoing] = field(default_factory=list)
    closed: bool = False

    def send(self, item: Outgoing) -> Receipt:
        if self.on_send is not None:
            self.on_send(item)
        queue = self.failures.get(item.recipient)
        if queue:
            raise queue.pop(0)
        self.sent.append(item)
        return Receipt(provider_id=f"fake-{reference_for(item.key)}", detail="accepted")

    def close(self) -> None:
        self.closed = True

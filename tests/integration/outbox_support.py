"""Shared by the outbox tests: a fixed clock, a composer without templates, a small book of customers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from duecourse.channels.dispatch import Composed, Dispatcher, NotComposed
from duecourse.channels.fake import FakeTransport
from duecourse.store import outbox as store
from duecourse.store.tables import accounts, customers, outbox

UTC = dt.UTC
DAY = dt.date(2026, 3, 2)
# 10:00 in Shanghai, 21:00 the day before in New York: inside CN hours, at the edge of US hours.
NOON_CN = dt.datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Composer:
    """Renders a message as ``kind for customer`` to the customer's e-mail or phone."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls = 0

    def compose(
        self, messages: Sequence[store.Message], now: dt.datetime, connection: Connection
    ) -> dict[int, Composed | NotComposed]:
        self.calls += len(messages)
        made: dict[int, Composed | NotComposed] = {}
        for message in messages:
            email, phone = connection.execute(
                select(customers.c.email, customers.c.phone).where(
                    customers.c.customer_id == message.customer_id
                )
            ).one()
            address = {"email": email, "sms": phone}.get(message.channel, message.customer_id)
            if not address:
                made[message.id] = NotComposed(f"no {message.channel} address")
                continue
            meta = {"segments": 2} if message.channel == "sms" else {"n": 1}
            made[message.id] = Composed(address, f"{message.kind} for {message.customer_id}".encode(), meta)
        return made


def customer_row(
    cid: str, jurisdiction: str = "CN", tz: str = "Asia/Shanghai", email: str = ""
) -> dict[str, Any]:
    return {
        "customer_id": cid,
        "name": cid,
        "locale": "zh-CN",
        "timezone": tz,
        "jurisdiction": jurisdiction,
        "phone": "+8613800138000",
        "email": email or f"{cid.lower()}@example.cn",
        "address_line1": "",
        "address_line2": "",
        "city": "",
        "region": "",
        "postal_code": "",
        "country": "CN",
    }


def load_book(engine: Engine) -> Engine:
    with engine.begin() as c:
        c.execute(
            insert(customers),
            [
                customer_row("C1"),
                customer_row("C2"),
                customer_row("C3", "US", "America/New_York", "c3@example.com"),
            ],
        )
        c.execute(
            insert(accounts),
            [
                {"account_id": f"A{i}", "customer_id": f"C{i}", "product_code": "card_cn", "opened_on": DAY}
                for i in (1, 2, 3)
            ],
        )
    return engine


def planned_message(
    account: str, channel: str = "email", kind: str = "overdue_reminder", **kw: Any
) -> store.Planned:
    values: dict[str, Any] = {
        "account_id": account,
        "customer_id": "C" + account[1:],
        "stage": "M1",
        "action": "0",
        "kind": kind,
        "channel": channel,
        "planned_on": DAY,
        "scheduled_at": NOON_CN,
        "fallback": ("letter",),
    }
    values.update(kw)
    return store.Planned(**values)


def dispatcher_for(engine: Engine, clock: Clock, **transports: FakeTransport) -> Dispatcher:
    chosen = transports or {"email": FakeTransport("email"), "letter": FakeTransport("letter")}
    return Dispatcher(engine, chosen, Composer(engine), clock, worker=7, batch=50)


def outbox_rows(engine: Engine) -> list[store.Message]:
    with engine.connect() as c:
        ids = c.execute(select(outbox.c.id).order_by(outbox.c.id)).scalars().all()
    found = [store.get(engine, i) for i in ids]
    return [m for m in found if m is not None]

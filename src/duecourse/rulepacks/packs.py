"""The rule packs: each jurisdiction's numbers as data (``rulepacks/{cn,us,uk}.toml``), each with its rule id
and citation, so that a decision can say which rule made it.

Only the contact hours are read here so far (the dispatcher checks them again at send time); the
strategy-and-compliance work adds caps, holds and notices to the same files.
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from zoneinfo import ZoneInfo

from duecourse.domain.errors import DuecourseError

JURISDICTIONS: tuple[str, ...] = ("CN", "US", "UK")


class RulePackError(DuecourseError):
    """A rule pack is missing or malformed (a packaging error: the shipped packs are tested)."""


@dataclass(frozen=True, slots=True)
class ContactHours:
    """The local hours in which a jurisdiction allows contact, ``start`` included, ``end`` excluded."""

    jurisdiction: str
    start: dt.time
    end: dt.time
    rule: str
    citation: str
    channels: tuple[str, ...]

    def allows(self, local: dt.datetime) -> bool:
        return self.start <= local.time().replace(tzinfo=None) < self.end

    def next_allowed(self, now: dt.datetime, timezone: str) -> dt.datetime | None:
        """``None`` when ``now`` is inside the hours in ``timezone``; otherwise the next start, as an instant.

        The next start is found on the local calendar (so a daylight-saving change between now and then
        is handled by the zone), and a start that falls in a skipped hour moves on by the hour skipped
        (02:30 on a spring-forward night becomes 03:30).
        """
        zone = ZoneInfo(timezone)
        local = now.astimezone(zone)
        if self.allows(local):
            return None
        day = (
            local.date()
            if local.time().replace(tzinfo=None) < self.start
            else local.date() + dt.timedelta(days=1)
        )
        start = dt.datetime.combine(day, self.start, tzinfo=zone)
        # A wall time that does not exist (spring forward) normalises through UTC to the valid instant after.
        return start.astimezone(dt.UTC).astimezone(zone).astimezone(dt.UTC)

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@functools.cache
def _pack(jurisdiction: str) -> dict[str, object]:
    if jurisdiction not in JURISDICTIONS:
        raise RulePackError(
            f"no rule pack for jurisdiction {jurisdiction!r} (known: {', '.join(JURISDICTIONS)})"
        )
    text = resources.files("duecourse.rulepacks").joinpath(f"{jurisdiction.lower()}.toml").read_text("utf-8")
    return tomllib.loads(text)


def _time(value: object, where: str) -> dt.time:
    if not isinstance(value, str):
        raise RulePackError(f'{where}: expected a time like "08:00"')
    return dt.time.fromisoformat(value)


@functools.cache
def contact_hours(jurisdiction: str) -> ContactHours:
    """The contact hours of the jurisdiction's rule pack."""
    table = _pack(jurisdiction).get("contact_hours")
    where = f"rulepacks/{jurisdiction.lower()}.toml [contact_hours]"
    if not isinstance(table, dict):
        raise RulePackError(f"{where}: missing")
    channels = table.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise RulePackError(f"{where}: channels must be a list of channel names")
    return ContactHours(
        jurisdiction=jurisdiction,
        start=_time(table.get("start"), f"{where} start"),
        end=_time(table.get("end"), f"{where} end"),
        rule=str(table.get("rule", "")),
        citation=str(table.get("citation", "")),
        channels=tuple(channels),
    )

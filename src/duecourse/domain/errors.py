"""Errors are values that say where.

``Problem`` is one thing wrong with an input (a file row, a config line, an API field, an account in a
run). Code that finds problems collects all of them and raises ``ProblemsError`` once, so a user sees
every problem at once, never only the first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in an input.

    Attributes:
        code: a stable identifier (``import.bad_amount``, ``config.bucket_gap``, ...).
        message: what is wrong, in words a user can act on.
        source: where: ``file:row:column`` for imports, ``file:line`` for config, ``account/run``.
    """

    code: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "source": self.source}


class DuecourseError(Exception):
    """Base of every error this package raises on purpose."""


class ProblemsError(DuecourseError):
    """One or more problems, all reported together."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class CalendarMissing(DuecourseError):
    """A business-day calendar has no data for the year asked (the calendar fails closed)."""


class UnknownAccount(DuecourseError):
    """An account id that the store does not hold."""

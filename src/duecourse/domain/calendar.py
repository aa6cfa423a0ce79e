"""Business-day calendars for China, the United States and England & Wales.

Deadlines such as "10 working days" (CN-WD-01), "5 days excluding legal public holidays, Saturdays and
Sundays" (US-VAL-01, US-VAL-02) are counted on these calendars. Every calendar fails closed: asking about
a year it has no data for raises ``CalendarMissing`` instead of guessing, because a deadline computed on a
wrong calendar is a compliance breach that nobody notices.

Sources:

* CN: the State Council General Office notice for each year (国务院办公厅关于<year>年部分节假日安排的通知),
  written as data in ``rulepacks/holidays/cn.toml`` (each year names its gov.cn notice). A working day is
  Monday to Friday unless the notice gives it off, plus the Saturdays and Sundays the notice makes working
  days (调休). Civil Code Art 201: the day a period starts is not counted; Art 203: a period whose last day
  is a statutory holiday ends on the first day after the holiday, which counting working days gives.
* US: the legal public holidays of 5 U.S.C. 6103(a), with the in-lieu-of rule for a Monday-to-Friday
  workweek (5 U.S.C. 6103(b); Executive Order 11582): a holiday on a Saturday is observed on the Friday
  before, one on a Sunday on the Monday after (OPM, "Federal Holidays"). Days that an Executive Order
  closes federal offices (e.g. 24 December in some years) are not 6103(a) holidays and are not included,
  since 12 CFR 1006.34(b)(5) excludes only those.
* UK: bank holidays in England and Wales: Banking and Financial Dealings Act 1971, Schedule 1, plus New
  Year's Day, Early May and substitute days by Royal Proclamation, and Good Friday and Christmas Day as
  common-law holidays; checked against https://www.gov.uk/bank-holidays.

Calendars are immutable values built once per code by ``calendar_for``; the rules for US and UK expand to
a table of days off when the calendar is built, so all three answer questions the same way.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from typing import Any, Protocol

from duecourse.domain.errors import CalendarMissing, Problem, ProblemsError

KNOWN_CODES = ("CN", "UK", "US")

_SATURDAY = 5  # date.weekday(): Monday is 0
_CN_DATA = "rulepacks/holidays/cn.toml"
_ONE_DAY = timedelta(days=1)

# The years each rule-based calendar answers for. US: the rules are stable since Columbus Day and
# Veterans Day settled in 1971/1978 and MLK Day started in 1986; Juneteenth is added from 2021 below.
# UK: only years whose bank holidays gov.uk has announced, because one-off holidays (a jubilee, a state
# funeral, a coronation) are proclaimed a few months ahead and cannot be computed.
US_YEARS = range(1990, 2101)
UK_YEARS = range(2018, 2028)


class BusinessCalendar(Protocol):
    """What the deadline rules ask of a business-day calendar."""

    # A read-only property rather than a plain attribute, so that frozen dataclasses satisfy the protocol.
    @property
    def code(self) -> str: ...

    def covers(self, year: int) -> bool:
        """Whether the calendar has data for every day of ``year``."""
        ...

    def is_business_day(self, day: date) -> bool:
        """Whether ``day`` is a business day; ``CalendarMissing`` for a year without data."""
        ...

    def add_business_days(self, start: date, n: int) -> date:
        """The ``n``-th business day after ``start`` (``start`` itself is not counted); ``n`` >= 1."""
        ...

    def next_business_day(self, day: date) -> date:
        """``day`` itself if it is a business day, else the first business day after it."""
        ...

    def holidays(self, year: int) -> tuple[date, ...]:
        """The days off in ``year`` besides ordinary weekends, in order."""
        ...


@dataclass(frozen=True, slots=True)
class TableCalendar:
    """A calendar given as a table: weekends off, listed days off, listed weekend days worked.

    Attributes:
        code: ``CN``, ``US`` or ``UK``.
        years: the years the table is complete for; any other year raises ``CalendarMissing``.
        days_off: holidays, observed and substitute days (for CN every listed day off, weekends included).
        make_up_days: Saturdays and Sundays that are working days (CN 调休); empty elsewhere.
        missing_hint: what to do when a year is missing, appended to the ``CalendarMissing`` message.
    """

    code: str
    years: frozenset[int]
    days_off: frozenset[date]
    make_up_days: frozenset[date]
    missing_hint: str

    def covers(self, year: int) -> bool:
        """Whether the calendar has data for ``year``."""
        return year in self.years

    def is_business_day(self, day: date) -> bool:
        """Whether ``day`` is a business day; ``CalendarMissing`` for a year without data."""
        self._require(day.year)
        if day in self.make_up_days:
            return True
        return day.weekday() < _SATURDAY and day not in self.days_off

    def add_business_days(self, start: date, n: int) -> date:
        """The ``n``-th business day after ``start`` (Civil Code Art 201: the start day is not counted)."""
        if n < 1:
            raise ValueError(f"add_business_days needs n >= 1, got {n}")
        day = start
        while n:
            day += _ONE_DAY
            if self.is_business_day(day):
                n -= 1
        return day

    def next_business_day(self, day: date) -> date:
        """``day`` itself if it is a business day, else the first business day after it."""
        while not self.is_business_day(day):
            day += _ONE_DAY
        return day

    def holidays(self, year: int) -> tuple[date, ...]:
        """The days off in ``year`` besides ordinary weekends, in order."""
        self._require(year)
        return tuple(sorted(day for day in self.days_off if day.year == year))

    def _require(self, year: int) -> None:
        if year not in self.years:
            raise CalendarMissing(
                f"{self.code} business-day calendar has no data for {year}; {self.missing_hint}"
            )


@functools.cache
def calendar_for(code: str) -> BusinessCalendar:
    """The business-day calendar for a country code (``CN``, ``US``, ``UK``), built once and kept."""
    match code:
        case "CN":
            return cn_calendar_from_toml(
                (resources.files("duecourse.rulepacks") / "holidays" / "cn.toml").read_text(encoding="utf-8")
            )
        case "US":
            return us_calendar()
        case "UK":
            return uk_calendar()
    raise ValueError(f"unknown business-day calendar {code!r}; known: {', '.join(KNOWN_CODES)}")


# --- CN: data ----------------------------------------------------------------------------------------------


def cn_calendar_from_toml(text: str, source: str = _CN_DATA) -> TableCalendar:
    """Build the CN calendar from holiday tables (the format of ``rulepacks/holidays/cn.toml``).

    Every problem in the text is reported at once as a ``ProblemsError``.
    """
    problems: list[Problem] = []
    years: set[int] = set()
    days_off: set[date] = set()
    make_up_days: set[date] = set()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProblemsError([Problem("calendar.bad_toml", str(exc), source)]) from exc
    for key, table in data.items():
        where = f"{source}:[{key}]"
        if not key.isdigit() or not isinstance(table, dict):
            problems.append(
                Problem("calendar.bad_year", f"expected a table named by a year, got {key!r}", where)
            )
            continue
        year = int(key)
        source_url = table.get("source")
        if not isinstance(source_url, str) or not source_url.startswith("https://www.gov.cn/"):
            problems.append(
                Problem("calendar.no_source", "source must be the gov.cn URL of the notice", where)
            )
        off = _dates(table, "off", year, where, problems)
        work = _dates(table, "workdays", year, where, problems)
        for day in sorted(off & work):
            problems.append(Problem("calendar.both", f"{day} is listed both as off and as a workday", where))
        for day in sorted(work):
            if day.weekday() < _SATURDAY:
                # A make-up day (调休上班) is by definition a Saturday or Sunday; a weekday is a typo.
                problems.append(
                    Problem("calendar.weekday_workday", f"{day} is a weekday, not a make-up day", where)
                )
        for day in sorted((off & make_up_days) | (work & days_off)):
            problems.append(Problem("calendar.conflict", f"{day} conflicts with another year's table", where))
        unknown = set(table) - {"source", "off", "workdays"}
        if unknown:
            problems.append(
                Problem("calendar.unknown_key", f"unknown keys: {', '.join(sorted(unknown))}", where)
            )
        years.add(year)
        days_off |= off
        make_up_days |= work
    if problems:
        raise ProblemsError(problems)
    return TableCalendar(
        code="CN",
        years=frozenset(years),
        days_off=frozenset(days_off),
        make_up_days=frozenset(make_up_days),
        missing_hint=f"add it to {_CN_DATA}",
    )


def _dates(table: dict[str, Any], key: str, year: int, where: str, problems: list[Problem]) -> set[date]:
    values = table.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, date) for v in values):
        problems.append(
            Problem("calendar.bad_dates", f"{key} must be a list of dates like 2025-10-01", where)
        )
        return set()
    found: set[date] = set(values)
    for day in sorted(found):
        # A notice may set the last days of the previous December (the 2019 notice set 2018-12-29..31).
        if day.year != year and (day.year, day.month) != (year - 1, 12):
            problems.append(
                Problem(
                    "calendar.wrong_year", f"{day} in {key} is not in {year} or the December before", where
                )
            )
    return found


# --- US: 5 U.S.C. 6103 -------------------------------------------------------------------------------------


def us_calendar() -> TableCalendar:
    """The US federal calendar: 5 U.S.C. 6103(a) holidays as observed by a Monday-to-Friday workweek."""
    # Computing one year past the end catches New Year's Day on a Saturday, observed on 31 December.
    observed = {
        _us_observed(day)
        for year in range(US_YEARS.start, US_YEARS.stop + 1)
        for day in us_legal_holidays(year)
    }
    return TableCalendar(
        code="US",
        years=frozenset(US_YEARS),
        days_off=frozenset(day for day in observed if day.year in US_YEARS),
        make_up_days=frozenset(),
        missing_hint=f"it covers {US_YEARS.start}-{US_YEARS.stop - 1} only",
    )


def us_legal_holidays(year: int) -> tuple[date, ...]:
    """The legal public holidays of 5 U.S.C. 6103(a) in ``year``, on their actual (unobserved) dates."""
    days = [
        date(year, 1, 1),  # New Year's Day
        _nth_weekday(year, 1, 0, 3),  # Birthday of Martin Luther King, Jr.: third Monday in January
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday: third Monday in February
        _last_weekday(year, 5, 0),  # Memorial Day: last Monday in May
    ]
    if year >= 2021:
        # Juneteenth National Independence Day Act, Pub. L. 117-17, signed 17 June 2021.
        days.append(date(year, 6, 19))
    days += [
        date(year, 7, 4),  # Independence Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day: first Monday in September
        _nth_weekday(year, 10, 0, 2),  # Columbus Day: second Monday in October
        date(year, 11, 11),  # Veterans Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving Day: fourth Thursday in November
        date(year, 12, 25),  # Christmas Day
    ]
    return tuple(days)


def _us_observed(day: date) -> date:
    # 5 U.S.C. 6103(b) and EO 11582: Saturday -> the Friday before, Sunday -> the Monday after.
    weekday = day.weekday()
    if weekday == _SATURDAY:
        return day - _ONE_DAY
    if weekday == _SATURDAY + 1:
        return day + _ONE_DAY
    return day


# --- UK: England and Wales ---------------------------------------------------------------------------------

# One-off changes by Royal Proclamation: (moved from, moved to); a ``None`` source adds a day.
_UK_MOVED: tuple[tuple[date | None, date], ...] = (
    (date(2020, 5, 4), date(2020, 5, 8)),  # Early May moved to Friday for the 75th anniversary of VE Day
    (date(2022, 5, 30), date(2022, 6, 2)),  # Spring bank holiday moved for the Platinum Jubilee
    (None, date(2022, 6, 3)),  # Platinum Jubilee bank holiday
    (None, date(2022, 9, 19)),  # State Funeral of Queen Elizabeth II
    (None, date(2023, 5, 8)),  # Coronation of King Charles III
)


def uk_calendar() -> TableCalendar:
    """The England and Wales bank-holiday calendar for the years gov.uk has announced."""
    days_off: set[date] = set()
    for year in UK_YEARS:
        days_off.update(uk_bank_holidays(year))
    return TableCalendar(
        code="UK",
        years=frozenset(UK_YEARS),
        days_off=frozenset(days_off),
        make_up_days=frozenset(),
        missing_hint=(
            f"it covers {UK_YEARS.start}-{UK_YEARS.stop - 1} (years gov.uk has announced); extend UK_YEARS "
            "and check for one-off bank holidays once the year is announced"
        ),
    )


def uk_bank_holidays(year: int) -> tuple[date, ...]:
    """England and Wales bank holidays in ``year`` by rule, with the known one-off changes applied."""
    easter = easter_sunday(year)
    days = {
        easter - timedelta(days=2),  # Good Friday
        easter + _ONE_DAY,  # Easter Monday
        _nth_weekday(year, 5, 0, 1),  # Early May bank holiday: first Monday in May
        _last_weekday(year, 5, 0),  # Spring bank holiday: last Monday in May
        _last_weekday(year, 8, 0),  # Summer bank holiday: last Monday in August
    }
    # A fixed-date holiday on a weekend gets the next weekday not already a holiday as its substitute, in
    # order: Christmas on a Saturday -> Mon 27, then Boxing Day (Sunday) -> Tue 28.
    for fixed in (date(year, 1, 1), date(year, 12, 25), date(year, 12, 26)):
        day = fixed
        while day.weekday() >= _SATURDAY or day in days:
            day += _ONE_DAY
        days.add(day)
    for moved_from, moved_to in _UK_MOVED:
        if moved_to.year == year:
            if moved_from is not None:
                days.discard(moved_from)
            days.add(moved_to)
    return tuple(sorted(days))


def easter_sunday(year: int) -> date:
    """Easter Sunday in the Gregorian calendar (the anonymous algorithm, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l = (32 + 2 * e + 2 * i - h - k) % 7  # noqa: E741 - the algorithm's published variable names
    m = (a + 11 * h + 22 * l) // 451
    month, day = divmod(h + l - 7 * m + 114, 31)
    return date(year, month, day + 1)


# --- date helpers ------------------------------------------------------------------------------------------


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year + month // 12, month % 12 + 1, 1) - _ONE_DAY
    return last - timedelta(days=(last.weekday() - weekday) % 7)

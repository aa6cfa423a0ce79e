"""Business-day calendars: the worked examples of rules.md (E-CN-5, E-US-2) and the published lists."""

from __future__ import annotations

from datetime import date

import pytest

from duecourse.domain.calendar import (
    KNOWN_CODES,
    calendar_for,
    cn_calendar_from_toml,
    easter_sunday,
    uk_bank_holidays,
)
from duecourse.domain.errors import CalendarMissing, ProblemsError


def d(text: str) -> date:
    return date.fromisoformat(text)


def days(*texts: str) -> tuple[date, ...]:
    return tuple(d(text) for text in texts)


# --- calendar_for ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", KNOWN_CODES)
def test_calendar_for_returns_the_same_calendar_for_the_same_code(code: str) -> None:
    assert calendar_for(code) is calendar_for(code)
    assert calendar_for(code).code == code


def test_calendar_for_an_unknown_code_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'FR'.*CN, UK, US"):
        calendar_for("FR")


@pytest.mark.parametrize("code", KNOWN_CODES)
def test_adding_zero_business_days_is_refused(code: str) -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        calendar_for(code).add_business_days(d("2025-06-02"), 0)


# --- CN ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("letter_date", "tenth_working_day"),
    [
        pytest.param("2025-09-26", "2025-10-16", id="golden-week-2025-with-two-make-up-days"),
        pytest.param("2025-01-20", "2025-02-08", id="spring-festival-2025-ends-on-make-up-saturday"),
        pytest.param("2026-02-06", "2026-02-27", id="spring-festival-2026"),
        pytest.param("2026-09-18", "2026-10-09", id="mid-autumn-and-golden-week-2026"),
    ],
)
def test_ten_working_days_after_a_chinese_letter_count_make_up_days_and_skip_holidays(
    letter_date: str, tenth_working_day: str
) -> None:
    # E-CN-5: counting starts the day after the letter date (Civil Code Art 201).
    assert calendar_for("CN").add_business_days(d(letter_date), 10) == d(tenth_working_day)


@pytest.mark.parametrize(
    "make_up_day",
    [
        pytest.param("2025-01-26", id="2025-01-26-sun"),
        pytest.param("2025-02-08", id="2025-02-08-sat"),
        pytest.param("2025-04-27", id="2025-04-27-sun"),
        pytest.param("2025-09-28", id="2025-09-28-sun"),
        pytest.param("2025-10-11", id="2025-10-11-sat"),
        pytest.param("2026-01-04", id="2026-01-04-sun"),
        pytest.param("2026-02-14", id="2026-02-14-sat"),
        pytest.param("2026-02-28", id="2026-02-28-sat"),
        pytest.param("2026-05-09", id="2026-05-09-sat"),
        pytest.param("2026-09-20", id="2026-09-20-sun"),
        pytest.param("2026-10-10", id="2026-10-10-sat"),
    ],
)
def test_chinese_make_up_weekend_days_are_business_days(make_up_day: str) -> None:
    # The make-up workdays listed in rules.md A5, written independently of cn.toml.
    day = d(make_up_day)
    assert day.weekday() >= 5
    assert calendar_for("CN").is_business_day(day)


@pytest.mark.parametrize("day", [f"2025-10-0{n}" for n in range(1, 9)])
def test_the_2025_golden_week_days_are_not_business_days(day: str) -> None:
    assert not calendar_for("CN").is_business_day(d(day))


def test_an_ordinary_chinese_weekend_is_not_a_business_day_and_an_ordinary_weekday_is() -> None:
    cn = calendar_for("CN")
    assert not cn.is_business_day(d("2025-03-08"))
    assert cn.is_business_day(d("2025-03-10"))


def test_the_next_chinese_business_day_after_golden_week_is_thursday_9_october() -> None:
    cn = calendar_for("CN")
    assert cn.next_business_day(d("2025-10-01")) == d("2025-10-09")
    assert cn.next_business_day(d("2025-10-09")) == d("2025-10-09")


def test_the_next_chinese_business_day_of_a_make_up_sunday_is_that_sunday() -> None:
    assert calendar_for("CN").next_business_day(d("2025-09-28")) == d("2025-09-28")


def test_chinese_holidays_list_every_day_off_including_weekend_days_in_a_holiday_block() -> None:
    holidays_2025 = calendar_for("CN").holidays(2025)
    assert len(holidays_2025) == 28
    assert d("2025-02-01") in holidays_2025  # a Saturday inside the Spring Festival block
    assert d("2025-01-26") not in holidays_2025  # a make-up workday
    assert holidays_2025 == tuple(sorted(holidays_2025))


def test_the_chinese_calendar_covers_only_years_with_a_state_council_notice() -> None:
    cn = calendar_for("CN")
    assert cn.covers(2025)
    assert cn.covers(2026)
    assert not cn.covers(2024)
    assert not cn.covers(2027)


def test_a_chinese_day_in_2027_fails_closed_with_a_message_saying_where_to_add_the_data() -> None:
    with pytest.raises(CalendarMissing) as raised:
        calendar_for("CN").is_business_day(d("2027-01-04"))
    assert str(raised.value) == (
        "CN business-day calendar has no data for 2027; add it to rulepacks/holidays/cn.toml"
    )


def test_counting_chinese_working_days_into_2027_fails_closed() -> None:
    with pytest.raises(CalendarMissing, match="2027"):
        calendar_for("CN").add_business_days(d("2026-12-24"), 10)


def test_chinese_holidays_for_a_year_without_data_fail_closed() -> None:
    with pytest.raises(CalendarMissing, match="2024"):
        calendar_for("CN").holidays(2024)


def test_a_notice_may_set_days_at_the_end_of_the_previous_december() -> None:
    # The 2019 notice made Sat 2018-12-29 a workday and 2018-12-30/31 days off.
    cn = cn_calendar_from_toml(
        """
        [2018]
        source = "https://www.gov.cn/example-2018"
        off = [2018-01-01]
        [2019]
        source = "https://www.gov.cn/example-2019"
        off = [2018-12-30, 2018-12-31, 2019-01-01]
        workdays = [2018-12-29]
        """
    )
    assert cn.is_business_day(d("2018-12-29"))
    assert not cn.is_business_day(d("2018-12-31"))
    assert cn.holidays(2018) == days("2018-01-01", "2018-12-30", "2018-12-31")


def test_a_bad_holiday_table_reports_every_problem_at_once() -> None:
    with pytest.raises(ProblemsError) as raised:
        cn_calendar_from_toml(
            """
            [2025]
            source = "http://example.com"
            off = [2025-10-01, 2024-05-01]
            workdays = [2025-10-01, 2025-10-09]
            extra = 1
            [notes]
            text = "x"
            """,
            source="cn.toml",
        )
    codes = sorted(p.code for p in raised.value.problems)
    assert codes == [
        "calendar.bad_year",
        "calendar.both",
        "calendar.no_source",
        "calendar.unknown_key",
        "calendar.weekday_workday",  # 2025-10-01
        "calendar.weekday_workday",  # 2025-10-09
        "calendar.wrong_year",
    ]
    assert all(p.source.startswith("cn.toml:[") for p in raised.value.problems)


def test_a_holiday_file_that_is_not_toml_is_reported_as_a_problem() -> None:
    with pytest.raises(ProblemsError) as raised:
        cn_calendar_from_toml("[2025\n", source="cn.toml")
    assert [p.code for p in raised.value.problems] == ["calendar.bad_toml"]


# --- US ----------------------------------------------------------------------------------------------------


def test_the_2025_us_holidays_are_the_opm_list() -> None:
    assert calendar_for("US").holidays(2025) == days(
        "2025-01-01",
        "2025-01-20",
        "2025-02-17",
        "2025-05-26",
        "2025-06-19",
        "2025-07-04",
        "2025-09-01",
        "2025-10-13",
        "2025-11-11",
        "2025-11-27",
        "2025-12-25",
    )


def test_the_2026_us_holidays_are_the_opm_list_with_independence_day_observed_on_friday() -> None:
    assert calendar_for("US").holidays(2026) == days(
        "2026-01-01",
        "2026-01-19",
        "2026-02-16",
        "2026-05-25",
        "2026-06-19",
        "2026-07-03",
        "2026-09-07",
        "2026-10-12",
        "2026-11-11",
        "2026-11-26",
        "2026-12-25",
    )


def test_independence_day_2026_observed_on_friday_3_july_is_not_a_business_day() -> None:
    assert not calendar_for("US").is_business_day(d("2026-07-03"))


@pytest.mark.parametrize(
    ("mailed", "assumed_receipt"),
    [
        pytest.param("2025-11-03", "2025-11-10", id="veterans-day-falls-on-a-tuesday-after-the-count"),
        pytest.param("2025-12-19", "2025-12-29", id="christmas-day-skipped"),
    ],
)
def test_receipt_is_assumed_five_business_days_after_mailing(mailed: str, assumed_receipt: str) -> None:
    # E-US-2, 12 CFR 1006.34(b)(5): excluding 6103(a) holidays, Saturdays and Sundays.
    assert calendar_for("US").add_business_days(d(mailed), 5) == d(assumed_receipt)


def test_new_years_day_on_a_saturday_is_observed_on_the_friday_before_in_the_previous_year() -> None:
    us = calendar_for("US")
    # 1 January 2022 was a Saturday: observed Friday 31 December 2021.
    assert d("2021-12-31") in us.holidays(2021)
    assert not us.is_business_day(d("2021-12-31"))
    assert all(day.year == 2022 for day in us.holidays(2022))
    assert d("2022-01-01") not in us.holidays(2022)


@pytest.mark.parametrize(
    ("year", "juneteenth"),
    [
        pytest.param(2020, None, id="2020-before-the-act"),
        pytest.param(2021, "2021-06-18", id="2021-saturday-observed-friday"),
        pytest.param(2022, "2022-06-20", id="2022-sunday-observed-monday"),
    ],
)
def test_juneteenth_is_a_holiday_from_2021(year: int, juneteenth: str | None) -> None:
    june = [day for day in calendar_for("US").holidays(year) if day.month == 6]
    assert june == ([d(juneteenth)] if juneteenth else [])


@pytest.mark.parametrize(
    ("year", "covered"),
    [
        pytest.param(1989, False, id="1989"),
        pytest.param(1990, True, id="1990"),
        pytest.param(2100, True, id="2100"),
        pytest.param(2101, False, id="2101"),
    ],
)
def test_the_us_calendar_covers_1990_to_2100(year: int, covered: bool) -> None:
    us = calendar_for("US")
    assert us.covers(year) is covered
    if covered:
        assert len(us.holidays(year)) >= 10
    else:
        with pytest.raises(CalendarMissing, match=f"US .* {year}; it covers 1990-2100"):
            us.holidays(year)


# --- UK ----------------------------------------------------------------------------------------------------


def test_the_2025_england_and_wales_bank_holidays_are_the_gov_uk_list() -> None:
    assert calendar_for("UK").holidays(2025) == days(
        "2025-01-01",
        "2025-04-18",
        "2025-04-21",
        "2025-05-05",
        "2025-05-26",
        "2025-08-25",
        "2025-12-25",
        "2025-12-26",
    )


def test_2022_has_the_spring_holiday_moved_the_platinum_jubilee_and_the_state_funeral() -> None:
    assert calendar_for("UK").holidays(2022) == days(
        "2022-01-03",  # New Year's Day was a Saturday
        "2022-04-15",
        "2022-04-18",
        "2022-05-02",
        "2022-06-02",  # Spring bank holiday moved from Monday 30 May
        "2022-06-03",  # Platinum Jubilee
        "2022-08-29",
        "2022-09-19",  # State Funeral of Queen Elizabeth II
        "2022-12-26",  # Boxing Day (Christmas was a Sunday)
        "2022-12-27",  # substitute for Christmas Day
    )


@pytest.mark.parametrize(
    ("day", "is_bank_holiday"),
    [
        pytest.param("2020-05-08", True, id="2020-early-may-moved-to-ve-day-friday"),
        pytest.param("2020-05-04", False, id="2020-first-monday-of-may-was-worked"),
        pytest.param("2023-05-08", True, id="2023-coronation"),
        pytest.param("2023-05-01", True, id="2023-early-may-kept"),
    ],
)
def test_one_off_bank_holiday_changes_are_applied(day: str, is_bank_holiday: bool) -> None:
    assert (d(day) in calendar_for("UK").holidays(int(day[:4]))) is is_bank_holiday


@pytest.mark.parametrize(
    ("year", "christmas_days_off"),
    [
        pytest.param(2026, ("2026-12-25", "2026-12-28"), id="2026-boxing-day-saturday-substitute-monday"),
        pytest.param(2021, ("2021-12-27", "2021-12-28"), id="2021-christmas-saturday-boxing-sunday"),
        pytest.param(2022, ("2022-12-26", "2022-12-27"), id="2022-christmas-sunday"),
    ],
)
def test_christmas_and_boxing_day_on_a_weekend_get_substitute_weekdays(
    year: int, christmas_days_off: tuple[str, ...]
) -> None:
    december = tuple(day for day in calendar_for("UK").holidays(year) if day.month == 12)
    assert december == days(*christmas_days_off)


def test_a_uk_substitute_day_is_not_a_business_day_but_the_weekend_holiday_stays_a_weekend() -> None:
    uk = calendar_for("UK")
    assert not uk.is_business_day(d("2026-12-28"))
    assert not uk.is_business_day(d("2026-12-26"))
    assert uk.next_business_day(d("2026-12-25")) == d("2026-12-29")


@pytest.mark.parametrize(
    ("year", "easter"),
    [
        pytest.param(2018, "2018-04-01", id="2018"),
        pytest.param(2019, "2019-04-21", id="2019-late"),
        pytest.param(2024, "2024-03-31", id="2024"),
        pytest.param(2025, "2025-04-20", id="2025"),
        pytest.param(2027, "2027-03-28", id="2027"),
        pytest.param(2285, "2285-03-22", id="earliest-possible"),
        pytest.param(2038, "2038-04-25", id="latest-possible"),
    ],
)
def test_easter_sunday_follows_the_gregorian_computus(year: int, easter: str) -> None:
    assert easter_sunday(year) == d(easter)


def test_every_uk_year_has_eight_bank_holidays_except_the_proclaimed_extras() -> None:
    counts = {year: len(uk_bank_holidays(year)) for year in range(2018, 2028)}
    assert counts == {year: 10 if year == 2022 else 9 if year == 2023 else 8 for year in counts}


@pytest.mark.parametrize("year", [2017, 2028])
def test_the_uk_calendar_fails_closed_outside_the_announced_years(year: int) -> None:
    with pytest.raises(CalendarMissing, match=f"UK business-day calendar has no data for {year}"):
        calendar_for("UK").is_business_day(date(year, 6, 1))

#!/usr/bin/env python3
"""Checks every day of every shipped calendar (policy/calendar/cn-*.toml) against two sources.

    pip install -r deploy/calendar/requirements.txt
    python3 -m unittest deploy/calendar/test_calendar.py

The file must agree, day by day, with `chinesecalendar` (its generator) and with the `holidays`
package's China calendar, an independent source: a day is off there when it is a listed holiday
or a weekend, unless a listed "Day off (substituted from MM/DD/YYYY)" moved that weekend day's
rest away (the make-up working day, 调休上班).
"""

import calendar
import datetime
import pathlib
import re
import tomllib
import unittest

import chinese_calendar
import holidays

ROOT = pathlib.Path(__file__).resolve().parents[2] / "policy" / "calendar"
SUBSTITUTED = re.compile(r"substituted from (\d\d)/(\d\d)/(\d{4})")


def shipped() -> dict[int, dict]:
    files = sorted(ROOT.glob("cn-*.toml"))
    return {int(p.stem.removeprefix("cn-")): tomllib.loads(p.read_text("utf-8")) for p in files}


def days_of(year: int):
    for month in range(1, 13):
        for d in range(1, calendar.monthrange(year, month)[1] + 1):
            yield datetime.date(year, month, d)


def holidays_package_working_days(year: int) -> dict[datetime.date, bool]:
    listed = holidays.China(years=year, categories=(holidays.PUBLIC,))
    make_up = set()
    for name in listed.values():
        for month, day, y in SUBSTITUTED.findall(name):
            make_up.add(datetime.date(int(y), int(month), int(day)))
    return {
        day: day in make_up or (day not in listed and day.weekday() < 5) for day in days_of(year)
    }


def file_working_days(data: dict) -> dict[datetime.date, bool]:
    year = data["year"]
    out = {}
    for month in range(1, 13):
        letters = data["days"][f"{month:02}"]
        for d, letter in enumerate(letters, start=1):
            out[datetime.date(year, month, d)] = letter in "WM"
    return out


class ShippedCalendars(unittest.TestCase):
    def test_years_shipped(self):
        self.assertGreaterEqual(set(shipped()), {2025, 2026})

    def test_every_day_agrees_with_both_sources(self):
        for year, data in shipped().items():
            with self.subTest(year=year):
                self.assertEqual(data["year"], year)
                ours = file_working_days(data)
                self.assertEqual(len(ours), 366 if calendar.isleap(year) else 365)
                other = holidays_package_working_days(year)
                for day in days_of(year):
                    generator = chinese_calendar.is_workday(day)
                    self.assertEqual(ours[day], generator, f"{day}: file vs chinesecalendar")
                    self.assertEqual(ours[day], other[day], f"{day}: file vs holidays")

    def test_letters_match_the_weekday(self):
        for year, data in shipped().items():
            for month in range(1, 13):
                for d, letter in enumerate(data["days"][f"{month:02}"], start=1):
                    weekend = datetime.date(year, month, d).weekday() >= 5
                    self.assertIn(letter, "RM" if weekend else "WH", f"{year}-{month:02}-{d:02}")

    def test_make_up_saturdays_are_known(self):
        # The Spring Festival and National Day make-up Saturdays of the State Council's notices.
        for day in (datetime.date(2025, 2, 8), datetime.date(2025, 10, 11),
                    datetime.date(2026, 2, 14), datetime.date(2026, 2, 28),
                    datetime.date(2026, 10, 10)):
            data = shipped()[day.year]
            self.assertEqual(data["days"][f"{day.month:02}"][day.day - 1], "M", day)


if __name__ == "__main__":
    unittest.main()

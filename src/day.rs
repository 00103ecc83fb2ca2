//! UTC calendar days (`YYYY-MM-DD`): usage days, admin ranges. Written here rather than with
//! chrono because these few lines are all we need of dates, and chrono's text parsing and
//! formatting cost the Worker ~20 KB of wasm. Checked against chrono in the tests below.

use std::fmt;

const MILLIS_PER_DAY: i64 = 86_400_000;
/// Days from 0000-03-01 to 1970-01-01: the day count below starts its years in March, so
/// that the leap day ends a year.
const DAYS_TO_EPOCH: i64 = 719_468;
const DAYS_PER_400_YEARS: i64 = 146_097;

/// A UTC day, as the number of days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(i64);

impl Day {
    /// The day a Unix time in milliseconds falls on.
    pub fn of_millis(millis: i64) -> Day {
        Day(millis.div_euclid(MILLIS_PER_DAY))
    }

    /// `YYYY-MM-DD` exactly (four-digit year, real month and day), or `None`.
    pub fn parse(text: &str) -> Option<Day> {
        let bytes = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = bytes.get(range)?;
            part.iter()
                .all(u8::is_ascii_digit)
                .then(|| part.iter().fold(0, |n, digit| n * 10 + i64::from(digit - b'0')))
        };
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        Some(Day::from_civil(year, month, day))
    }

    pub fn next(self) -> Day {
        Day(self.0 + 1)
    }

    /// Whole days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Day) -> i64 {
        later.0 - self.0
    }

    /// The day count of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    fn from_civil(year: i64, month: i64, day: i64) -> Day {
        let year = if month <= 2 { year - 1 } else { year };
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        Day(era * DAYS_PER_400_YEARS + day_of_era - DAYS_TO_EPOCH)
    }

    /// Year, month, day (Hinnant's `civil_from_days`).
    fn civil(self) -> (i64, i64, i64) {
        let days = self.0 + DAYS_TO_EPOCH;
        let era = days.div_euclid(DAYS_PER_400_YEARS);
        let day_of_era = days - era * DAYS_PER_400_YEARS;
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = (month_from_march + 2) % 12 + 1;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.civil();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use proptest::prelude::*;

    #[test]
    fn days_around_the_calendar_s_edges() {
        assert_eq!(Day::of_millis(0).to_string(), "1970-01-01");
        assert_eq!(Day::of_millis(-1).to_string(), "1969-12-31");
        assert_eq!(Day::of_millis(1_800_000_000_000).to_string(), "2027-01-15");
        assert_eq!(
            Day::parse("2024-02-29").map(Day::next).unwrap().to_string(),
            "2024-03-01"
        );
        assert_eq!(
            Day::parse("2026-12-31").map(Day::next).unwrap().to_string(),
            "2027-01-01"
        );
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-1-01",
            "2026/01/01",
            "+026-01-01",
            "2026-01-01 ",
            "２０２６-01-01",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
        assert!(Day::parse("2000-02-29").is_some());
        let (from, to) = (Day::parse("2026-11-01").unwrap(), Day::parse("2026-12-01").unwrap());
        assert_eq!(from.days_until(to), 30);
        assert_eq!(to.days_until(from), -30);
    }

    proptest! {
        /// Every day of years 0001–9999 reads, prints and counts as chrono has it.
        #[test]
        fn agrees_with_chrono(days in -719_162i64..2_932_896) {
            let day = Day(days);
            let theirs = NaiveDate::from_num_days_from_ce_opt(i32::try_from(days + 719_163).unwrap()).unwrap();
            prop_assert_eq!(day.to_string(), theirs.to_string());
            prop_assert_eq!(Day::parse(&theirs.to_string()), Some(day));
            prop_assert_eq!(Day::of_millis(days * MILLIS_PER_DAY + 86_399_999), day);
        }
    }
}

//! Working days in China Standard Time: when a conditional application is due.
//! Weekends and the configured public holidays do not count; weekend days the
//! State Council declares working days (调休) do.

use crate::catalog::china_date;
use std::collections::BTreeSet;

const DAY_S: u64 = 86_400;
const UTC8_S: u64 = 8 * 3600;

/// Days a provider has to decide, by the 2016 measures.
pub const DEFAULT_DUE_WORKING_DAYS: u32 = 10;

/// Longest span searched for working days: a calendar that declares a whole year
/// a holiday is a mistake, not a reason to loop.
const MAX_SEARCH_DAYS: u64 = 3 * 366;

/// How a node counts the days an approver has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    /// Working days an approver has to decide.
    pub due_working_days: u32,
    /// Public holidays (`YYYY-MM-DD`) that fall on weekdays.
    pub holidays: BTreeSet<String>,
    /// Weekend days that are working days (`YYYY-MM-DD`).
    pub workdays: BTreeSet<String>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            due_working_days: DEFAULT_DUE_WORKING_DAYS,
            holidays: BTreeSet::new(),
            workdays: BTreeSet::new(),
        }
    }
}

impl Calendar {
    /// Whether the China-time day starting at unix second `day_start` is a working day.
    fn is_working(&self, day_start: u64) -> bool {
        let date = china_date(day_start * 1000);
        // 1970-01-01 was a Thursday: day 0 is weekday 3 counting Monday as 0.
        let weekday = ((day_start + UTC8_S) / DAY_S + 3) % 7;
        let weekend = weekday >= 5;
        if weekend {
            self.workdays.contains(&date)
        } else {
            !self.holidays.contains(&date)
        }
    }

    /// When an application submitted at unix second `at` is due: the end (China
    /// time) of the `due_working_days`th working day after the day it arrived.
    pub fn due_at(&self, at: u64) -> u64 {
        let local_midnight = |t: u64| (t + UTC8_S) / DAY_S * DAY_S - UTC8_S;
        let mut day = local_midnight(at);
        let mut left = self.due_working_days;
        for _ in 0..MAX_SEARCH_DAYS {
            if left == 0 {
                break;
            }
            day += DAY_S;
            if self.is_working(day) {
                left -= 1;
            }
        }
        day + DAY_S - 1
    }

    /// Working days an approver has left at unix second `now` before unix second
    /// `due`: the working days after today (China time) up to the due day, so 0
    /// on the last day and after it.
    pub fn working_days_left(&self, now: u64, due: u64) -> u32 {
        let mut day = (now + UTC8_S) / DAY_S * DAY_S - UTC8_S;
        let mut left = 0;
        for _ in 0..MAX_SEARCH_DAYS {
            day += DAY_S;
            if day > due {
                break;
            }
            if self.is_working(day) {
                left += 1;
            }
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a China-time date and hour.
    fn at(date: &str, hour: u64) -> u64 {
        // Find the day by scanning from 2026-01-01 (1767196800 is 2026-01-01 00:00 UTC+8).
        let mut t = 1_767_196_800;
        while china_date(t * 1000) != date {
            t += DAY_S;
        }
        t + hour * 3600
    }

    #[test]
    fn ten_working_days_skip_weekends() {
        let calendar = Calendar::default();
        // Friday 2026-11-27, 15:00: ten working days later is Friday 2026-12-11.
        let due = calendar.due_at(at("2026-11-27", 15));
        assert_eq!(china_date(due * 1000), "2026-12-11");
        assert_eq!(due, at("2026-12-12", 0) - 1, "the end of that day, China time");
        // Counting down: ten on the day it arrived, one on Thursday the 10th
        // (Friday is left), none on the due day or after it.
        let submitted = at("2026-11-27", 15);
        assert_eq!(calendar.working_days_left(submitted, due), 10);
        assert_eq!(calendar.working_days_left(at("2026-11-28", 10), due), 10, "a Saturday");
        assert_eq!(calendar.working_days_left(at("2026-12-10", 10), due), 1);
        assert_eq!(calendar.working_days_left(at("2026-12-11", 10), due), 0);
        assert_eq!(calendar.working_days_left(at("2026-12-15", 10), due), 0);
    }

    #[test]
    fn holidays_do_not_count_and_declared_workdays_do() {
        let mut calendar = Calendar { due_working_days: 5, ..Calendar::default() };
        // Thursday 2026-10-01 (National Day week): without a calendar, five working
        // days from Wed 2026-09-30 end on Wed 2026-10-07.
        assert_eq!(china_date(calendar.due_at(at("2026-09-30", 9)) * 1000), "2026-10-07");
        for d in ["2026-10-01", "2026-10-02", "2026-10-05", "2026-10-06", "2026-10-07"] {
            calendar.holidays.insert(d.into());
        }
        calendar.workdays.insert("2026-10-10".into()); // a Saturday worked instead
                                                       // Working days: Thu 10-08, Fri 10-09, Sat 10-10, Mon 10-12, Tue 10-13.
        assert_eq!(china_date(calendar.due_at(at("2026-09-30", 9)) * 1000), "2026-10-13");
    }
}

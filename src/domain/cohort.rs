//! Cohorts: who may book (a range of birth years), when, which vaccine, and how fast the
//! waiting room lets people through.

use super::{invalid, text, vaccine, Invalid};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const DEFAULT_ADMISSION_RATE: f64 = 100.0;
pub const MAX_ADMISSION_RATE: f64 = 100_000.0;
/// The most leading zero bits a join's challenge may ask (about 16 million hashes on average).
pub const MAX_JOIN_DIFFICULTY: i32 = 24;

/// The body of `POST /api/v1/admin/cohorts`, as sent.
///
/// Rules the schema cannot state: `birth_year_from` <= `birth_year_to`, `closes_at` after
/// `opens_at`, no day twice in `birth_day_schedule` (else 422 `validation`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortRequest {
    #[schema(schema_with = super::schemas::text_100)]
    pub name: String,
    #[schema(minimum = 1900, maximum = 2100)]
    #[serde(with = "super::whole")]
    pub birth_year_from: i32,
    #[schema(minimum = 1900, maximum = 2100)]
    #[serde(with = "super::whole")]
    pub birth_year_to: i32,
    #[schema(schema_with = super::schemas::instant)]
    pub opens_at: String,
    #[schema(schema_with = super::schemas::instant)]
    pub closes_at: String,
    #[schema(schema_with = super::schemas::vaccine)]
    pub vaccine: String,
    #[schema(minimum = 1, maximum = 365)]
    #[serde(with = "super::whole")]
    pub dose_interval_days: i32,
    /// Admissions per second out of the waiting room; 100 if absent.
    #[schema(exclusive_minimum = 0, maximum = 100000)]
    pub admission_rate_per_s: Option<f64>,
    /// Optional: days on which only birth days ending in given digits may verify.
    #[schema(max_items = 366)]
    pub birth_day_schedule: Option<Vec<BirthDayRule>>,
    /// Leading zero bits a join's solved challenge must show; 0 (the default) asks none.
    #[schema(minimum = 0, maximum = 24)]
    #[serde(default, with = "super::whole::option")]
    pub join_difficulty: Option<i32>,
}

/// On `date`, only citizens whose day of birth ends in one of `digits` may verify.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BirthDayRule {
    #[schema(schema_with = super::schemas::date)]
    pub date: chrono::NaiveDate,
    #[schema(schema_with = super::schemas::digits)]
    #[serde(deserialize_with = "super::whole::list::deserialize")]
    pub digits: Vec<u8>,
}

fn parse_schedule(rules: Vec<BirthDayRule>) -> Result<Vec<BirthDayRule>, Invalid> {
    if rules.len() > 366 {
        return invalid("birth_day_schedule holds at most 366 days");
    }
    let mut seen = std::collections::HashSet::new();
    for r in &rules {
        if r.digits.is_empty() || r.digits.iter().any(|d| *d > 9) {
            return invalid("birth_day_schedule digits must be 0 to 9, at least one a day");
        }
        if !seen.insert(r.date) {
            return invalid("birth_day_schedule names a day twice");
        }
    }
    let mut rules = rules;
    rules.sort_by_key(|r| r.date);
    Ok(rules)
}

/// A cohort the operators may create: every field checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCohort {
    pub name: String,
    pub birth_year_from: i32,
    pub birth_year_to: i32,
    pub opens_at: i64,
    pub closes_at: i64,
    pub vaccine: String,
    pub dose_interval_days: i32,
    pub admission_rate_per_s: f64,
    pub birth_day_schedule: Vec<BirthDayRule>,
    pub join_difficulty: i32,
}

impl TryFrom<CohortRequest> for NewCohort {
    type Error = Invalid;

    fn try_from(r: CohortRequest) -> Result<Self, Invalid> {
        let name = text("name", &r.name, 100)?;
        for year in [r.birth_year_from, r.birth_year_to] {
            if !(1900..=2100).contains(&year) {
                return invalid("birth years must be between 1900 and 2100");
            }
        }
        if r.birth_year_from > r.birth_year_to {
            return invalid("birth_year_from must not be after birth_year_to");
        }
        let opens_at = parse_instant("opens_at", &r.opens_at)?;
        let closes_at = parse_instant("closes_at", &r.closes_at)?;
        if closes_at <= opens_at {
            return invalid("closes_at must be after opens_at");
        }
        if !(1..=365).contains(&r.dose_interval_days) {
            return invalid("dose_interval_days must be between 1 and 365");
        }
        let admission_rate_per_s = match r.admission_rate_per_s {
            Some(rate) => parse_rate(rate)?,
            None => DEFAULT_ADMISSION_RATE,
        };
        Ok(Self {
            name,
            birth_year_from: r.birth_year_from,
            birth_year_to: r.birth_year_to,
            opens_at,
            closes_at,
            vaccine: vaccine(&r.vaccine)?,
            dose_interval_days: r.dose_interval_days,
            admission_rate_per_s,
            birth_day_schedule: parse_schedule(r.birth_day_schedule.unwrap_or_default())?,
            join_difficulty: r
                .join_difficulty
                .map(parse_difficulty)
                .transpose()?
                .unwrap_or(0),
        })
    }
}

/// The body of `PATCH /api/v1/admin/cohorts/{id}`.
///
/// `closes_at` must stay after the cohort's `opens_at` (else 422 `validation`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortPatchRequest {
    #[schema(exclusive_minimum = 0, maximum = 100000)]
    pub admission_rate_per_s: Option<f64>,
    #[schema(format = DateTime)]
    pub closes_at: Option<String>,
    pub paused: Option<bool>,
    /// Leading zero bits a join's solved challenge must show; 0 asks none.
    #[schema(minimum = 0, maximum = 24)]
    #[serde(default, with = "super::whole::option")]
    pub join_difficulty: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CohortPatch {
    pub admission_rate_per_s: Option<f64>,
    pub closes_at: Option<i64>,
    pub paused: Option<bool>,
    pub join_difficulty: Option<i32>,
}

impl TryFrom<CohortPatchRequest> for CohortPatch {
    type Error = Invalid;

    fn try_from(r: CohortPatchRequest) -> Result<Self, Invalid> {
        Ok(Self {
            admission_rate_per_s: r.admission_rate_per_s.map(parse_rate).transpose()?,
            closes_at: r
                .closes_at
                .as_deref()
                .map(|c| parse_instant("closes_at", c))
                .transpose()?,
            paused: r.paused,
            join_difficulty: r.join_difficulty.map(parse_difficulty).transpose()?,
        })
    }
}

fn parse_difficulty(bits: i32) -> Result<i32, Invalid> {
    if !(0..=MAX_JOIN_DIFFICULTY).contains(&bits) {
        return invalid(format!(
            "join_difficulty must be between 0 and {MAX_JOIN_DIFFICULTY}"
        ));
    }
    Ok(bits)
}

fn parse_rate(rate: f64) -> Result<f64, Invalid> {
    if !rate.is_finite() || rate <= 0.0 || rate > MAX_ADMISSION_RATE {
        return invalid(format!(
            "admission_rate_per_s must be above 0 and at most {MAX_ADMISSION_RATE}"
        ));
    }
    Ok(rate)
}

/// RFC 3339 with an offset, to unix seconds.
pub fn parse_instant(field: &str, value: &str) -> Result<i64, Invalid> {
    DateTime::parse_from_rfc3339(value)
        .map(|d| d.timestamp())
        .or_else(|_| {
            invalid(format!(
                "{field} must be an RFC 3339 instant with an offset"
            ))
        })
}

/// What a cohort is, as the actors and the listing know it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    pub id: i32,
    pub name: String,
    pub birth_year_from: i32,
    pub birth_year_to: i32,
    pub opens_at: i64,
    pub closes_at: i64,
    pub vaccine: String,
    pub dose_interval_days: i32,
    pub admission_rate_per_s: f64,
    pub paused: bool,
    pub birth_day_schedule: Vec<BirthDayRule>,
    /// Leading zero bits a join's challenge must show at least (0: joins need none).
    pub join_difficulty: i32,
}

impl Cohort {
    /// Whether someone born on `birth` may verify on `today`; if not, the next day that is
    /// theirs (if the schedule has one). Days the schedule does not name are open to all.
    pub fn birth_day_turn(
        &self,
        birth: chrono::NaiveDate,
        today: chrono::NaiveDate,
    ) -> Result<(), Option<chrono::NaiveDate>> {
        use chrono::Datelike;
        let digit = (birth.day() % 10) as u8;
        match self.birth_day_schedule.iter().find(|r| r.date == today) {
            Some(rule) if !rule.digits.contains(&digit) => Err(self
                .birth_day_schedule
                .iter()
                .find(|r| r.date > today && r.digits.contains(&digit))
                .map(|r| r.date)),
            _ => Ok(()),
        }
    }

    pub fn admits_birth_year(&self, year: i32) -> bool {
        (self.birth_year_from..=self.birth_year_to).contains(&year)
    }

    pub fn state(&self, now: i64, sold_out: bool) -> CohortState {
        if now >= self.closes_at {
            CohortState::Closed
        } else if now < self.opens_at {
            CohortState::Scheduled
        } else if sold_out {
            CohortState::SoldOut
        } else {
            CohortState::Open
        }
    }

    pub fn apply(&mut self, patch: &CohortPatch) {
        if let Some(rate) = patch.admission_rate_per_s {
            self.admission_rate_per_s = rate;
        }
        if let Some(closes_at) = patch.closes_at {
            self.closes_at = closes_at;
        }
        if let Some(paused) = patch.paused {
            self.paused = paused;
        }
        if let Some(bits) = patch.join_difficulty {
            self.join_difficulty = bits;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CohortState {
    Scheduled,
    Open,
    Closed,
    SoldOut,
}

/// A cohort as answered over HTTP.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CohortView {
    pub id: i32,
    pub name: String,
    pub birth_year_from: i32,
    pub birth_year_to: i32,
    #[schema(format = DateTime)]
    pub opens_at: String,
    #[schema(format = DateTime)]
    pub closes_at: String,
    pub vaccine: String,
    pub dose_interval_days: i32,
    pub admission_rate_per_s: f64,
    pub paused: bool,
    pub state: CohortState,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub birth_day_schedule: Vec<BirthDayRule>,
    /// Above 0, a join needs a solved challenge (`GET /api/v1/cohorts/{id}/challenge`).
    pub join_difficulty: i32,
}

impl CohortView {
    pub fn new(c: &Cohort, state: CohortState, zone: FixedOffset) -> Self {
        Self {
            id: c.id,
            name: c.name.clone(),
            birth_year_from: c.birth_year_from,
            birth_year_to: c.birth_year_to,
            opens_at: format_instant(c.opens_at, zone),
            closes_at: format_instant(c.closes_at, zone),
            vaccine: c.vaccine.clone(),
            dose_interval_days: c.dose_interval_days,
            admission_rate_per_s: c.admission_rate_per_s,
            paused: c.paused,
            state,
            birth_day_schedule: c.birth_day_schedule.clone(),
            join_difficulty: c.join_difficulty,
        }
    }
}

/// Unix seconds to RFC 3339 in the server's zone.
pub fn format_instant(secs: i64, zone: FixedOffset) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .with_timezone(&zone)
        .to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_just_above_the_limit_is_refused() {
        // Read exactly: the nearest f64 to this is above 100000, and so is refused.
        let patch: CohortPatchRequest =
            serde_json::from_str(r#"{"admission_rate_per_s": 100000.00000000001}"#).unwrap();
        assert!(CohortPatch::try_from(patch).is_err());
    }

    fn request() -> CohortRequest {
        CohortRequest {
            name: "55-59".into(),
            birth_year_from: 1962,
            birth_year_to: 1966,
            opens_at: "2021-07-12T00:00:00+09:00".into(),
            closes_at: "2021-07-17T18:00:00+09:00".into(),
            vaccine: "Moderna".into(),
            dose_interval_days: 28,
            admission_rate_per_s: None,
            birth_day_schedule: None,
            join_difficulty: None,
        }
    }

    #[test]
    fn the_birth_day_split_admits_only_its_digits_and_names_the_next_turn() {
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2021, 8, d).unwrap();
        let mut r = request();
        r.birth_day_schedule = Some(vec![
            BirthDayRule {
                date: day(10),
                digits: vec![0, 5],
            },
            BirthDayRule {
                date: day(9),
                digits: vec![9, 4],
            },
        ]);
        let new = NewCohort::try_from(r).unwrap();
        let c = Cohort {
            id: 1,
            name: new.name,
            birth_year_from: 1962,
            birth_year_to: 1966,
            opens_at: 0,
            closes_at: 1,
            vaccine: "Moderna".into(),
            dose_interval_days: 28,
            admission_rate_per_s: 1.0,
            paused: false,
            birth_day_schedule: new.birth_day_schedule,
            join_difficulty: 0,
        };
        let born = |d: u32| chrono::NaiveDate::from_ymd_opt(1965, 3, d).unwrap();
        assert_eq!(c.birth_day_turn(born(19), day(9)), Ok(()));
        assert_eq!(c.birth_day_turn(born(15), day(9)), Err(Some(day(10))));
        assert_eq!(c.birth_day_turn(born(13), day(9)), Err(None));
        assert_eq!(
            c.birth_day_turn(born(13), day(11)),
            Ok(()),
            "unnamed days are open to all"
        );
        let mut bad = request();
        bad.birth_day_schedule = Some(vec![BirthDayRule {
            date: day(9),
            digits: vec![10],
        }]);
        assert!(NewCohort::try_from(bad).is_err());
    }

    #[test]
    fn a_good_request_parses_with_the_default_rate() {
        let c = NewCohort::try_from(request()).unwrap();
        assert_eq!(c.admission_rate_per_s, DEFAULT_ADMISSION_RATE);
        assert_eq!(c.opens_at, 1_626_015_600);
    }

    #[test]
    fn inverted_ranges_and_bad_instants_are_refused() {
        let mut r = request();
        r.birth_year_from = 1970;
        assert!(NewCohort::try_from(r).is_err());
        let mut r = request();
        r.closes_at = "2021-07-11T00:00:00+09:00".into();
        assert!(NewCohort::try_from(r).is_err());
        let mut r = request();
        r.opens_at = "2021-07-12 00:00".into();
        assert!(NewCohort::try_from(r).is_err());
        let mut r = request();
        r.admission_rate_per_s = Some(f64::NAN);
        assert!(NewCohort::try_from(r).is_err());
        let mut r = request();
        r.join_difficulty = Some(25);
        assert!(NewCohort::try_from(r).is_err());
        let mut r = request();
        r.join_difficulty = Some(-1);
        assert!(NewCohort::try_from(r).is_err());
    }
}

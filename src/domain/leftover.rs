//! Leftover doses (API 1.1): what operators post and citizens sign up with, parsed at the
//! boundary, and the shapes answered. No I/O.

use super::booking::BookingView;
use super::{invalid, vaccine, Invalid};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Centers one sign-up may wait for at most.
pub const MAX_CENTERS: usize = 5;
/// Doses one posting may hold at most.
pub const MAX_DOSES: i64 = 10_000;

/// `until` must be later today, in the server's zone (else 422 `validation`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeftoverRequest {
    #[schema(schema_with = super::schemas::vaccine)]
    pub vaccine: String,
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(with = "super::whole")]
    pub doses: i64,
    /// The instant the doses are usable until (RFC 3339, later today).
    #[schema(schema_with = super::schemas::instant)]
    pub until: String,
}

/// Leftovers as checked: usable from `now` until `until` (unix seconds), today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLeftoverDoses {
    pub vaccine: String,
    pub doses: i32,
    pub until: i64,
}

impl NewLeftoverDoses {
    pub fn parse(r: LeftoverRequest, now: i64, zone: FixedOffset) -> Result<Self, Invalid> {
        let vaccine = vaccine(&r.vaccine)?;
        if !(1..=MAX_DOSES).contains(&r.doses) {
            return invalid(format!("doses must be between 1 and {MAX_DOSES}"));
        }
        let until = DateTime::parse_from_rfc3339(&r.until)
            .map(|d| d.timestamp())
            .or_else(|_| invalid("until must be an RFC 3339 instant with an offset"))?;
        if until <= now {
            return invalid("until must be later than now");
        }
        if day_of(until, zone) != day_of(now, zone) {
            return invalid("until must be today (leftover doses are for the same day)");
        }
        Ok(Self {
            vaccine,
            doses: r.doses as i32,
            until,
        })
    }
}

/// The day an instant falls on in `zone`.
pub fn day_of(secs: i64, zone: FixedOffset) -> NaiveDate {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .with_timezone(&zone)
        .date_naive()
}

/// The first instant (unix seconds) after the day `secs` falls on, in `zone`.
pub fn end_of_day(secs: i64, zone: FixedOffset) -> i64 {
    let next = day_of(secs, zone).succ_opt().unwrap_or(NaiveDate::MAX);
    zone.from_local_datetime(&next.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .map(|d| d.timestamp())
        .unwrap_or(secs + 86_400)
}

/// A sign-up: 1 to 5 distinct centers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitlistRequest {
    #[schema(min_items = 1, max_items = 5)]
    #[serde(with = "super::whole::list")]
    pub center_ids: Vec<i64>,
}

impl WaitlistRequest {
    /// The centers, in the order given, each once; unknown ids are the caller's to check.
    pub fn centers(&self) -> Result<Vec<i32>, Invalid> {
        if self.center_ids.is_empty() || self.center_ids.len() > MAX_CENTERS {
            return invalid(format!(
                "center_ids must hold between 1 and {MAX_CENTERS} centers"
            ));
        }
        let mut out: Vec<i32> = Vec::new();
        for id in &self.center_ids {
            let id = i32::try_from(*id).or_else(|_| invalid(format!("no center {id}")))?;
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }
}

/// Leftovers as posted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeftoverView {
    pub id: i32,
    pub center_id: i32,
    pub vaccine: String,
    pub doses: i64,
    #[schema(format = DateTime)]
    pub until: String,
    /// Doses neither booked nor under a held offer.
    pub remaining: i64,
}

/// A center with doses left today.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeftoverListing {
    pub center_id: i32,
    pub name: String,
    pub region: String,
    pub vaccine: String,
    pub remaining: i64,
    #[schema(format = DateTime)]
    pub until: String,
}

/// A new sign-up.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WaitlistAnswer {
    /// The bearer token of this sign-up, valid until the end of the day.
    pub entry: String,
    #[schema(pattern = "^waiting$")]
    pub state: &'static str,
    pub position: i64,
}

/// A dose held for this citizen alone until `expires_at`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfferView {
    pub center_id: i32,
    pub vaccine: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// Where a sign-up stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WaitlistStatus {
    #[schema(pattern = "^(waiting|offered|booked|lapsed|expired|cancelled)$")]
    pub state: String,
    /// Among those still waiting for an offer (the next is 1); 0 once offered or booked.
    pub position: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<OfferView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booking: Option<BookingView>,
}

/// A sign-up that ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WaitlistLeft {
    #[schema(pattern = "^cancelled$")]
    pub state: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seoul() -> FixedOffset {
        FixedOffset::east_opt(9 * 3600).unwrap()
    }

    fn request(until: &str) -> LeftoverRequest {
        LeftoverRequest {
            vaccine: "Pfizer".into(),
            doses: 3,
            until: until.into(),
        }
    }

    #[test]
    fn until_must_be_later_today() {
        // 2021-07-19 10:00 in Seoul.
        let now = DateTime::parse_from_rfc3339("2021-07-19T10:00:00+09:00")
            .unwrap()
            .timestamp();
        let ok = NewLeftoverDoses::parse(request("2021-07-19T18:00:00+09:00"), now, seoul());
        assert_eq!(ok.unwrap().doses, 3);
        assert!(
            NewLeftoverDoses::parse(request("2021-07-19T09:59:00+09:00"), now, seoul()).is_err()
        );
        assert!(
            NewLeftoverDoses::parse(request("2021-07-20T00:00:00+09:00"), now, seoul()).is_err()
        );
        // The day is Seoul's: 05:30 UTC is 14:30 today, 15:30 UTC already tomorrow.
        assert!(NewLeftoverDoses::parse(request("2021-07-19T05:30:00Z"), now, seoul()).is_ok());
        assert!(NewLeftoverDoses::parse(request("2021-07-19T15:30:00Z"), now, seoul()).is_err());
        assert!(NewLeftoverDoses::parse(request("tonight"), now, seoul()).is_err());
    }

    #[test]
    fn the_day_ends_at_local_midnight() {
        let now = DateTime::parse_from_rfc3339("2021-07-19T23:59:59+09:00")
            .unwrap()
            .timestamp();
        assert_eq!(end_of_day(now, seoul()), now + 1);
    }

    #[test]
    fn a_sign_up_names_one_to_five_centers_each_once() {
        let r = |ids: Vec<i64>| WaitlistRequest { center_ids: ids };
        assert_eq!(r(vec![3, 1, 3]).centers().unwrap(), vec![3, 1]);
        assert!(r(vec![]).centers().is_err());
        assert!(r(vec![1, 2, 3, 4, 5, 6]).centers().is_err());
        assert!(r(vec![i64::MAX]).centers().is_err());
    }
}

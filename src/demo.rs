//! `--demo`: the July 2021 scenario, so a newcomer can book at once. Two cohorts on Moderna
//! with 28 days between doses, open now, and a dozen centers in several regions with two
//! months of hourly slots. Seeded through the same paths as the admin API, and only into an
//! empty database.

use crate::domain::cohort::NewCohort;
use crate::domain::slot::{NewCenter, NewSlot};
use crate::startup::AppState;
use chrono::Days;

const CENTERS: [(&str, &str, &str); 12] = [
    ("종로구 예방접종센터", "서울", "서울 종로구 삼봉로 43"),
    ("강남구 예방접종센터", "서울", "서울 강남구 학동로 426"),
    ("마포구 예방접종센터", "서울", "서울 마포구 월드컵로 212"),
    ("송파구 예방접종센터", "서울", "서울 송파구 올림픽로 326"),
    (
        "수원시 예방접종센터",
        "경기",
        "경기 수원시 팔달구 효원로 241",
    ),
    (
        "성남시 예방접종센터",
        "경기",
        "경기 성남시 중원구 성남대로 997",
    ),
    (
        "고양시 예방접종센터",
        "경기",
        "경기 고양시 일산동구 중앙로 1286",
    ),
    ("해운대구 예방접종센터", "부산", "부산 해운대구 중동2로 11"),
    (
        "부산진구 예방접종센터",
        "부산",
        "부산 부산진구 시민공원로 73",
    ),
    ("대구 중구 예방접종센터", "대구", "대구 중구 공평로 88"),
    ("광주 서구 예방접종센터", "광주", "광주 서구 내방로 111"),
    ("제주시 예방접종센터", "제주", "제주 제주시 광양9길 10"),
];

/// Places per hourly slot in the demo.
pub const DEMO_CAPACITY: i64 = 30;
const VACCINE: &str = "Moderna";

pub async fn seed(state: &AppState) -> Result<(), String> {
    if !state.registry.cohorts().is_empty() || !state.registry.centers().is_empty() {
        log::info!("--demo: the database already holds data; nothing seeded");
        return Ok(());
    }
    let now = crate::now_s();
    for (name, from, to) in [
        ("55-59세 (1962-1966년생)", 1962, 1966),
        ("50-54세 (1967-1971년생)", 1967, 1971),
    ] {
        let cohort = NewCohort {
            name: name.into(),
            birth_year_from: from,
            birth_year_to: to,
            opens_at: now,
            closes_at: now + 30 * 86_400,
            vaccine: VACCINE.into(),
            dose_interval_days: 28,
            admission_rate_per_s: 200.0,
            birth_day_schedule: Vec::new(),
            join_difficulty: 0,
        };
        state
            .create_cohort(cohort)
            .await
            .map_err(|e| e.to_string())?;
    }
    let today = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .with_timezone(&state.config.zone)
        .date_naive();
    let mut places = 0;
    for (name, region, address) in CENTERS {
        let center = NewCenter {
            name: name.into(),
            region: region.into(),
            address: address.into(),
        };
        let handle = state
            .create_center(center)
            .await
            .map_err(|e| e.to_string())?;
        let slots: Vec<NewSlot> = (1..=61u64)
            .filter_map(|d| today.checked_add_days(Days::new(d)))
            .flat_map(|date| {
                (9..18u16).map(move |h| NewSlot {
                    date,
                    start: h * 60,
                    end: h * 60 + 60,
                    capacity: DEMO_CAPACITY,
                    vaccine: VACCINE.into(),
                })
            })
            .collect();
        places += slots.len() as i64 * DEMO_CAPACITY;
        state
            .add_slots(&handle, slots)
            .await
            .map_err(|e| e.to_string())?;
    }
    log::info!(
        "--demo: seeded 2 cohorts and {} centers with {places} places",
        CENTERS.len()
    );
    Ok(())
}

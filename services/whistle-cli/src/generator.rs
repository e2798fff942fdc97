//! The realistic report generator `whistle load` and `whistle simulate` send: Ordos grids,
//! categories weighted as a winter city files them, now and then a report built to be rejected.

use prost::Message as _;
use rand::{rngs::StdRng, Rng, SeedableRng};
use whistle_domain::{
    policy::{Category, Policy, SlaClass},
    AreaCode, Level, OrgUnit,
};
use whistle_proto::v1;

/// The mix of reports a city sends.
pub struct Feed {
    grids: Vec<OrgUnit>,
    /// (code, Chinese name, weight, an emergency class); every weight is positive.
    categories: Vec<(String, String, u32, bool)>,
    rng: StdRng,
    /// Report ids are `{prefix}-{n}`.
    prefix: String,
    sent: u64,
}

/// One report ready to publish.
pub struct Outgoing {
    pub report_id: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub json: bool,
    /// Built to be rejected.
    pub invalid: bool,
    /// Its outcome event names its report id (garbage bytes have none).
    pub traceable: bool,
    /// The grid and the grid worker filing it, the category code and the title, for printing.
    pub grid: AreaCode,
    pub reporter_id: String,
    pub category: String,
    pub title: String,
}

/// How often `whistle load` files each category: winter in Ordos, heating dominates.
fn load_weight(category: &Category) -> u32 {
    match category.code.as_str().split('.').next().unwrap_or_default() {
        "heating" => 8,
        "sanitation" | "municipal" | "noise" | "property" => 5,
        "disputes" | "water" | "power" | "public_order" => 3,
        _ => 2,
    }
}

impl Feed {
    pub fn new(policy: &Policy, seed: u64) -> Feed {
        Feed::weighted(
            policy,
            seed,
            format!("load-{:x}", seed & 0xff_ffff),
            load_weight,
        )
    }

    /// A feed whose categories are drawn by `weight` (0 leaves a category out; when every weight
    /// is 0, `whistle load`'s mix is used), with report ids `{prefix}-{n}`.
    pub(crate) fn weighted(
        policy: &Policy,
        seed: u64,
        prefix: String,
        weight: impl Fn(&Category) -> u32,
    ) -> Feed {
        let grids = whistle_domain::ordos::dataset()
            .units
            .into_iter()
            .filter(|u| u.level() == Level::Grid)
            .collect();
        let entry = |c: &Category, weight: u32| {
            (
                c.code.to_string(),
                c.name_zh.clone(),
                weight,
                c.sla == SlaClass::Emergency,
            )
        };
        let mut categories: Vec<_> = policy
            .categories()
            .filter_map(|c| match weight(c) {
                0 => None,
                w => Some(entry(c, w)),
            })
            .collect();
        if categories.is_empty() {
            categories = policy
                .categories()
                .map(|c| entry(c, load_weight(c)))
                .collect();
        }
        Feed {
            grids,
            categories,
            rng: StdRng::seed_from_u64(seed),
            prefix,
            sent: 0,
        }
    }

    pub fn next(&mut self, invalid_share: f64) -> Outgoing {
        self.sent += 1;
        let report_id = format!("{}-{}", self.prefix, self.sent);
        let grid = &self.grids[self.rng.random_range(0..self.grids.len())];
        let total: u32 = self.categories.iter().map(|c| c.2).sum();
        let mut pick = self.rng.random_range(0..total);
        let category = self
            .categories
            .iter()
            .find(|c| {
                if pick < c.2 {
                    true
                } else {
                    pick -= c.2;
                    false
                }
            })
            .map(|c| (c.0.clone(), c.1.clone(), c.3))
            .expect("weights cover the range");
        let (category, name, emergency_class) = category;
        let grid_code = grid.code.clone();
        let reporter_id = format!("gw-{}", grid.code);
        let urgency = match self.rng.random_range(0..100) {
            _ if emergency_class => v1::Urgency::Emergency,
            0..2 => v1::Urgency::Emergency,
            2..17 => v1::Urgency::Urgent,
            _ => v1::Urgency::Normal,
        };
        let compound = grid.name.strip_suffix("小区").unwrap_or(&grid.name);
        let now = chrono::Utc::now();
        let mut report = v1::Report {
            report_id: report_id.clone(),
            reporter_id: reporter_id.clone(),
            grid_code: grid.code.to_string(),
            category,
            urgency: urgency as i32,
            title: format!("{compound}小区居民反映{name}"),
            description: format!("网格员巡查发现：{}，涉及{}，请尽快处理。", name, grid.name),
            location: Some(v1::Location {
                lat: grid.lat + self.rng.random_range(-0.001..0.001),
                lon: grid.lon + self.rng.random_range(-0.001..0.001),
                address: grid.name.clone(),
            }),
            occurred_at: Some(whistle_proto::timestamp_from_unix_millis(
                now.timestamp_millis() - self.rng.random_range(0..3_600_000),
            )),
            reported_at: Some(whistle_proto::timestamp_from_unix_millis(
                now.timestamp_millis(),
            )),
            attachments: (0..self.rng.random_range(0..3))
                .map(|i| v1::Attachment {
                    uri: format!(
                        "https://oss.ordos.example/grid/{}/{report_id}-{i}.jpg",
                        grid.code
                    ),
                    media_type: "image/jpeg".into(),
                    size_bytes: self.rng.random_range(50_000..2_000_000),
                    caption: String::new(),
                })
                .collect(),
            contact_phone: String::new(),
        };
        let mut subject = whistle_wire::subject::report(&grid.code);
        let invalid = self.rng.random_bool(invalid_share.clamp(0.0, 1.0));
        let mut garbage = None;
        if invalid {
            match self.rng.random_range(0..5) {
                0 => report.category = "weather.too_cold".into(),
                1 => report.reporter_id = "gw-150602999999999".into(),
                2 => {
                    report.reported_at = Some(whistle_proto::timestamp_from_unix_millis(
                        now.timestamp_millis() + 86_400_000,
                    ))
                }
                3 => {
                    let unknown: AreaCode =
                        format!("{}999", grid.code.parent().expect("grid has a community"))
                            .parse()
                            .expect("valid");
                    report.grid_code = unknown.to_string();
                    subject = whistle_wire::subject::report(&unknown);
                }
                _ => garbage = Some(b"\xff\xfe not a protobuf report".to_vec()),
            }
        }
        let json = !invalid && self.rng.random_bool(0.1);
        let traceable = garbage.is_none();
        let (category, title) = (report.category.clone(), report.title.clone());
        let payload = match garbage {
            Some(bytes) => bytes,
            None if json => whistle_proto::to_json(&report)
                .expect("reports serialize")
                .into_bytes(),
            None => report.encode_to_vec(),
        };
        Outgoing {
            report_id,
            subject,
            payload,
            json,
            invalid,
            traceable,
            grid: grid_code,
            reporter_id,
            category,
            title,
        }
    }
}

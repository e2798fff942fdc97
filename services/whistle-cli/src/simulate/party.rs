//! The Party's part of a simulation (群众点单、社区派单、党员接单, docs/party.md): communities offer
//! small wishes (微心愿) and some of the incidents they handle to their volunteers, registered
//! members claim them (sometimes two at once, one wins), a few give a claim back, the winner marks
//! the work done, and the community confirms it and records the resident's rating — so the
//! screen's 党建引领 panel moves. Members and teams are the Ordos registry's
//! (`whistle_domain::volunteer::ordos::registry`, which `whistle seed` registers).

use std::{collections::HashMap, sync::Arc, time::Duration};

use rand::{seq::IndexedRandom as _, Rng};
use whistle_proto::v1::{self, command::Body};

use super::{plan, say, Sim};
use crate::{commands, watch::short};

/// The share of the incidents a community holds (in a category the policy lets volunteers
/// take) that it offers to its volunteers.
pub(super) const INCIDENT_OFFER_SHARE: f64 = 0.35;
/// The share of offers two members claim at once.
const RIVAL_SHARE: f64 = 0.3;
/// The share of claims given back before the work.
const RELEASE_SHARE: f64 = 0.1;
/// The share of small wishes offered in the org's first community (see `wishes`).
const FIRST_COMMUNITY_SHARE: f64 = 0.25;
/// The share of offers made to one team rather than the whole community.
const TEAM_SHARE: f64 = 0.3;
/// The share of confirmations that record the rating at once; the others rate afterwards.
const RATED_AT_CONFIRMATION: f64 = 0.6;

pub(super) const WISHES: &[(&str, &str)] = &[
    ("帮独居老人买药", "王奶奶腿脚不便，需要每周代购降压药"),
    ("更换楼道灯泡", "3号楼2单元楼道灯坏了，住户多为老人"),
    ("陪同老人就医", "李大爷下周二去市医院复查，子女在外地"),
    ("辅导留守儿童作业", "两名小学生放学后需要作业辅导"),
    ("清理小区积雪", "昨夜降雪，老旧小区无物业，需要人手扫雪"),
    ("代缴水电费", "独居老人不会用手机缴费"),
    ("修理轮椅", "残疾居民的轮椅刹车失灵"),
    ("陪伴空巢老人聊天", "张奶奶老伴去世后情绪低落"),
    ("上门理发", "行动不便的老人需要理发"),
    ("搬运过冬煤炭", "平房住户需要把煤搬进院里"),
];

const DONE_NOTES: &[&str] = &[
    "已完成，居民表示感谢",
    "已上门办好，留了联系方式",
    "已完成并拍照留存",
    "已办妥，约定下周回访",
];

const RELEASE_NOTES: &[&str] = &["临时单位有任务，退回社区", "家中有事，无法按时完成"];

/// The Ordos registry as the simulation uses it: members per community, and the teams of each
/// community with their members.
pub(super) struct Volunteers {
    communities: Vec<String>,
    members: HashMap<String, Vec<String>>,
    teams: HashMap<String, Vec<(String, Vec<String>)>>,
}

impl Volunteers {
    pub(super) fn ordos() -> Volunteers {
        let registry =
            whistle_domain::volunteer::ordos::registry(&whistle_domain::ordos::dataset());
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for member in &registry.members {
            members
                .entry(member.community.to_string())
                .or_default()
                .push(member.id.to_string());
        }
        let mut teams: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
        for team in &registry.teams {
            teams.entry(team.community.to_string()).or_default().push((
                team.id.clone(),
                team.members.iter().map(|m| m.to_string()).collect(),
            ));
        }
        let mut communities: Vec<String> = members.keys().cloned().collect();
        communities.sort();
        Volunteers {
            communities,
            members,
            teams,
        }
    }

    fn has_members(&self, community: &str) -> bool {
        self.members.get(community).is_some_and(|m| !m.is_empty())
    }
}

/// Who may claim an offer: the team's members, or every member of the community.
#[derive(Clone)]
struct Offered {
    id: String,
    community: String,
    /// 「title」, with the incident's short id for an incident.
    label: String,
    claimants: Vec<String>,
}

fn satisfaction(rng: &mut impl Rng) -> v1::Satisfaction {
    match rng.random_range(0..20) {
        0 => v1::Satisfaction::Unsatisfied,
        1..=3 => v1::Satisfaction::BasicallySatisfied,
        _ => v1::Satisfaction::Satisfied,
    }
}

impl Sim {
    /// Sends a volunteer command as `actor` and prints the outcome after `label` (the offer as
    /// printed); the offer after it, if applied.
    async fn offer_command(
        &self,
        verb: &'static str,
        actor: &str,
        label: &str,
        body: Body,
    ) -> Option<v1::OfferChanged> {
        let command = v1::Command {
            command_id: uuid::Uuid::now_v7().to_string(),
            actor_id: actor.to_owned(),
            incident_id: String::new(),
            expected_version: 0,
            body: Some(body),
        };
        let reply = tokio::select! {
            _ = self.stop.cancelled() => return None,
            reply = self.commands.send(&command) => reply,
        };
        match reply.map(commands::outcome) {
            Ok(Ok(ok)) => {
                self.board(|b| {
                    b.done += 1;
                    *b.offers.entry(verb).or_default() += 1;
                });
                let offer = ok.offer.map(|o| *o);
                let status = offer.as_ref().map(|o| o.status.as_str()).unwrap_or("");
                say(verb, actor, &format!("{label} → {status}"));
                offer
            }
            Ok(Err(refused)) => {
                self.board(|b| *b.refused.entry(refused.code.clone()).or_default() += 1);
                say(&format!("✗{verb}"), actor, &format!("{label} — {refused}"));
                None
            }
            Err(e) => {
                self.board(|b| b.unanswered += 1);
                say(&format!("✗{verb}"), actor, &format!("{label} — {e}"));
                None
            }
        }
    }

    /// Communities offer small wishes, one every `every` on average, until the run stops or
    /// `until` passes.
    pub(super) async fn wishes(self: Arc<Self>, every: Duration, until: Option<Duration>) {
        let start = tokio::time::Instant::now();
        loop {
            let wait = self.rng(|rng| every.mul_f64(rng.random_range(0.5..1.5)));
            if !self.sleep(wait).await || until.is_some_and(|u| start.elapsed() >= u) {
                return;
            }
            let (community, (title, detail), team) = self.rng(|rng| {
                // A quarter to the org's first community (code order), whose member and paired
                // leader deploy/local/run.sh makes tokens for: their pages have offers to show.
                let communities = &self.volunteers.communities;
                let community = if rng.random_bool(FIRST_COMMUNITY_SHARE) {
                    communities.first()
                } else {
                    communities.choose(rng)
                }
                .cloned()
                .unwrap_or_default();
                let wish = *WISHES.choose(rng).expect("wishes");
                let team = rng
                    .random_bool(TEAM_SHARE)
                    .then(|| {
                        self.volunteers
                            .teams
                            .get(&community)
                            .and_then(|t| t.choose(rng))
                            .cloned()
                    })
                    .flatten();
                (community, wish, team)
            });
            if community.is_empty() {
                return;
            }
            self.offer(&community, "", title, detail, team);
        }
    }

    /// The community handling an incident offers it to its volunteers (when the policy lets
    /// them take its category and the community has members).
    pub(super) fn offer_incident(self: &Arc<Self>, event: &v1::Event, title: &str) {
        if !self.volunteers.has_members(&event.community_code) {
            return;
        }
        self.offer(
            &event.community_code,
            &event.incident_id,
            title,
            "社区组织党员志愿者协助处置",
            None,
        );
    }

    /// Offers and then plays the offer's life in a task of its own.
    fn offer(
        self: &Arc<Self>,
        community: &str,
        incident: &str,
        title: &str,
        detail: &str,
        team: Option<(String, Vec<String>)>,
    ) {
        let sim = self.clone();
        let body = Body::OfferToVolunteers(v1::OfferToVolunteers {
            community_code: community.to_owned(),
            offer_incident_id: incident.to_owned(),
            title: title.to_owned(),
            detail: detail.to_owned(),
            team_id: team.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
        });
        let claimants = match team {
            Some((_, members)) => members,
            None => self
                .volunteers
                .members
                .get(community)
                .cloned()
                .unwrap_or_default(),
        };
        let (community, title) = (community.to_owned(), title.to_owned());
        let verb = if incident.is_empty() {
            "派微心愿"
        } else {
            "派单志愿者"
        };
        let label = if incident.is_empty() {
            format!("「{title}」")
        } else {
            format!("「{title}」 #{}", short(incident))
        };
        self.tracker.spawn(async move {
            let actor = format!("hd-{community}");
            let Some(offer) = sim.offer_command(verb, &actor, &label, body).await else {
                return;
            };
            sim.play(Offered {
                id: offer.offer_id,
                community,
                label,
                claimants,
            })
            .await;
        });
    }

    /// An offer's life after it is made: claimed (by one member, or two at once), sometimes given
    /// back and claimed again, done, confirmed and rated.
    async fn play(&self, offer: Offered) {
        let unit = self.unit();
        let handler = format!("hd-{}", offer.community);
        let mut holder = None;
        for round in 0..2 {
            let (delay, claimants) = self.rng(|rng| {
                let n = if rng.random_bool(RIVAL_SHARE) { 2 } else { 1 };
                let claimants: Vec<String> =
                    offer.claimants.choose_multiple(rng, n).cloned().collect();
                (unit.mul_f64(rng.random_range(0.05..0.5)), claimants)
            });
            if claimants.is_empty() || !self.sleep(delay).await {
                return;
            }
            let (id, label) = (&offer.id, &offer.label);
            let claim = |member: String| {
                let body = Body::ClaimOffer(v1::ClaimOffer {
                    offer_id: id.clone(),
                });
                async move { self.offer_command("抢单", &member, label, body).await }
            };
            // Two members at once: dispatch lets exactly one win; the other is told it is taken.
            let won = match claimants.as_slice() {
                [one] => claim(one.clone()).await.map(|_| one.clone()),
                [a, b, ..] => match tokio::join!(claim(a.clone()), claim(b.clone())) {
                    (Some(_), _) => Some(a.clone()),
                    (None, Some(_)) => Some(b.clone()),
                    (None, None) => None,
                },
                [] => None,
            };
            let Some(member) = won else { return };
            let release = round == 0 && self.rng(|rng| rng.random_bool(RELEASE_SHARE));
            if !release {
                holder = Some(member);
                break;
            }
            let (delay, note) = self.rng(|rng| {
                (
                    unit.mul_f64(rng.random_range(0.1..0.4)),
                    plan::pick(rng, RELEASE_NOTES),
                )
            });
            if !self.sleep(delay).await {
                return;
            }
            let body = Body::ReleaseOffer(v1::ReleaseOffer {
                offer_id: offer.id.clone(),
                note: note.into(),
            });
            if self
                .offer_command("志愿退单", &member, &offer.label, body)
                .await
                .is_none()
            {
                return;
            }
        }
        let Some(member) = holder else { return };
        let max = self.policy.volunteers().max_minutes.max(1);
        let (delay, minutes, note) = self.rng(|rng| {
            (
                unit.mul_f64(rng.random_range(0.3..1.2)),
                rng.random_range(30..=180).min(max),
                plan::pick(rng, DONE_NOTES),
            )
        });
        if !self.sleep(delay).await {
            return;
        }
        let body = Body::CompleteOffer(v1::CompleteOffer {
            offer_id: offer.id.clone(),
            note: note.into(),
            photo_ids: Vec::new(),
            minutes,
        });
        if self
            .offer_command("志愿完成", &member, &offer.label, body)
            .await
            .is_none()
        {
            return;
        }
        let (delay, at_once, rating) = self.rng(|rng| {
            (
                unit.mul_f64(rng.random_range(0.1..0.6)),
                rng.random_bool(RATED_AT_CONFIRMATION),
                satisfaction(rng),
            )
        });
        if !self.sleep(delay).await {
            return;
        }
        let body = Body::ConfirmOffer(v1::ConfirmOffer {
            offer_id: offer.id.clone(),
            minutes: 0,
            rating: if at_once { rating as i32 } else { 0 },
            note: String::new(),
        });
        if self
            .offer_command("社区确认", &handler, &offer.label, body)
            .await
            .is_none()
            || at_once
        {
            return;
        }
        if !self.sleep(unit.mul_f64(0.3)).await {
            return;
        }
        let body = Body::RateOffer(v1::RateOffer {
            offer_id: offer.id.clone(),
            rating: rating as i32,
            note: commands::satisfaction_zh(rating).into(),
        });
        self.offer_command("群众评价", &handler, &offer.label, body)
            .await;
    }
}

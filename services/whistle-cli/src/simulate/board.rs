//! What a simulation run has seen and done, for its periodic summary.

use std::collections::{BTreeMap, HashMap};

use crate::commands;

/// What the run has seen and done.
#[derive(Default)]
pub(super) struct Board {
    /// This run's incidents: latest (version, status) seen.
    pub(super) incidents: HashMap<String, (u64, String)>,
    /// Events about this run's incidents, by kind.
    pub(super) events: BTreeMap<String, u64>,
    pub(super) reports: u64,
    pub(super) publish_errors: u64,
    pub(super) attached: u64,
    pub(super) rejected: u64,
    pub(super) done: u64,
    pub(super) refused: BTreeMap<String, u64>,
    pub(super) unanswered: u64,
    /// The volunteer commands applied, by what the simulation printed (派微心愿, 抢单, …).
    pub(super) offers: BTreeMap<&'static str, u64>,
}

impl Board {
    pub(super) fn is_ours(&self, incident: &str) -> bool {
        self.incidents.contains_key(incident)
    }

    /// Records an incident's status if the event is newer than what was seen (the two consumers
    /// are not ordered with respect to each other).
    pub(super) fn saw(&mut self, incident: &str, version: u64, status: i32) {
        if let Some(seen) = self.incidents.get_mut(incident) {
            if version >= seen.0 {
                *seen = (version, commands::status_name(status));
            }
        }
    }

    pub(super) fn summary(&self) -> String {
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, status) in self.incidents.values() {
            *by_status.entry(status.as_str()).or_default() += 1;
        }
        let status = |s: &str| by_status.get(s).copied().unwrap_or(0);
        let event = |k: &str| self.events.get(k).copied().unwrap_or(0);
        let refused: u64 = self.refused.values().sum();
        let refused_detail = if self.refused.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                self.refused
                    .iter()
                    .map(|(code, n)| format!("{code} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let offer = |k: &str| self.offers.get(k).copied().unwrap_or(0);
        let party = format!(
            " | 党员志愿 派单 {} 抢单 {} 完成 {} 确认 {}",
            offer("派微心愿") + offer("派单志愿者"),
            offer("抢单"),
            offer("志愿完成"),
            offer("社区确认")
        );
        format!(
            "上报 {} 件, 事件 {} 件: 处理中 {} · 已吹哨 {} · 已报到 {} · 已办结 {} · 已结案 {} · 未回访结案 {} | \
             吹哨 {} 督办 {} 退单 {} 改派 {} 重办 {} 超期 {} 并入 {} | 动作 成功 {} 拒绝 {}{refused_detail} 无应答 {}{party}",
            self.reports,
            self.incidents.len(),
            status("handling"),
            status("whistled"),
            status("accepted"),
            status("resolved"),
            status("closed"),
            status("closed_unverified"),
            event("incident.whistled"),
            event("task.supervised"),
            event("task.returned"),
            event("task.reassigned"),
            event("incident.reopened"),
            event("incident.overdue"),
            self.attached,
            self.done,
            refused,
            self.unanswered,
        )
    }
}

#[cfg(test)]
mod tests {
    use whistle_proto::v1::IncidentStatus;

    use super::*;

    #[test]
    fn the_newest_version_decides_the_status() {
        let mut board = Board::default();
        board.incidents.insert("a".into(), (1, "handling".into()));
        board.saw("a", 3, IncidentStatus::Whistled as i32);
        // An older event read later from the other consumer changes nothing.
        board.saw("a", 2, IncidentStatus::Handling as i32);
        // Events of incidents this run did not file are not counted.
        board.saw("b", 9, IncidentStatus::Closed as i32);
        assert_eq!(board.incidents["a"], (3, "whistled".to_owned()));
        assert!(!board.is_ours("b"));
    }

    #[test]
    fn the_summary_counts_by_status() {
        let mut board = Board::default();
        for (id, status) in [("a", "closed"), ("b", "closed"), ("c", "handling")] {
            board.incidents.insert(id.into(), (1, status.into()));
        }
        board.events.insert("task.returned".into(), 4);
        board.refused.insert("stale".into(), 2);
        board.reports = 3;
        board.offers.insert("派微心愿", 2);
        board.offers.insert("派单志愿者", 1);
        board.offers.insert("抢单", 5);
        let line = board.summary();
        assert!(
            line.starts_with("上报 3 件, 事件 3 件: 处理中 1 ·"),
            "{line}"
        );
        assert!(line.contains("已结案 2"), "{line}");
        assert!(line.contains("退单 4"), "{line}");
        assert!(line.contains("拒绝 2 (stale 2)"), "{line}");
        assert!(line.contains("党员志愿 派单 3 抢单 5 完成 0"), "{line}");
    }
}

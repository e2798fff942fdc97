//! Dispatch's one `LISTEN`: every channel its followers wait on (policy approvals, org imports,
//! people's changes, photo erasures on request) is followed on a single connection, and each
//! notification wakes the followers of its channel.
//!
//! A `LISTEN` holds a connection of dispatch's pool for as long as it runs; one per follower left
//! too few for the commands and timers of a small pool (the tests' pool has four). With one the
//! followers cost one connection however many channels they follow.
//!
//! A wake-up carries no payload: every follower reads what it follows whole when woken. Several
//! notifications before a follower looks are one wake-up. A (re)connection of the listener wakes
//! every follower, since notifications sent while it was down are lost.

use std::{collections::BTreeSet, time::Duration};

use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use whistle_store::listen::{Listener, Notice};

/// The followers and their channels, until [`Hub::run`] starts listening.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    followers: Vec<(Vec<&'static str>, watch::Sender<()>)>,
}

/// What a follower waits on: a notification on one of its channels, or a (re)connection.
#[derive(Debug)]
pub(crate) struct Wakeups {
    receiver: watch::Receiver<()>,
}

impl Hub {
    /// A follower of `channels`. Subscribe before reading what they announce, so that nothing
    /// notified between the read and the first wait is missed.
    pub fn subscribe(&mut self, channels: &[&'static str]) -> Wakeups {
        let (sender, receiver) = watch::channel(());
        self.followers.push((channels.to_vec(), sender));
        Wakeups { receiver }
    }

    /// Every channel a follower subscribed to, each once.
    fn channels(&self) -> Vec<&'static str> {
        let all: BTreeSet<&'static str> = self
            .followers
            .iter()
            .flat_map(|(channels, _)| channels.iter().copied())
            .collect();
        all.into_iter().collect()
    }

    /// Listens on every subscribed channel (one pool connection, reconnecting every `retry`
    /// after a failure) and wakes the followers until `shutdown`.
    pub async fn run(self, pool: PgPool, retry: Duration, shutdown: CancellationToken) {
        let channels = self.channels();
        if channels.is_empty() {
            return;
        }
        let mut listener = Listener::new(pool, &channels, retry, "dispatch's notifications");
        loop {
            let notice = tokio::select! {
                _ = shutdown.cancelled() => return,
                notice = listener.next() => notice,
            };
            self.deliver(&notice);
        }
    }

    /// Wakes the followers `notice` concerns: those of its channel, or all after a (re)connection.
    fn deliver(&self, notice: &Notice) {
        for (followed, sender) in &self.followers {
            let wake = match notice {
                Notice::Connected => true,
                Notice::Notified { channel, .. } => followed.iter().any(|c| c == channel),
            };
            if wake {
                // Marks the value unseen: the follower's next `wait` returns at once.
                sender.send_replace(());
            }
        }
    }
}

impl Wakeups {
    /// Returns once one of the follower's channels was notified, or the listener (re)connected,
    /// since the last return; waits forever once the hub stopped (at shutdown, which the
    /// follower waits on beside this).
    pub async fn wait(&mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_is_listened_to_once() {
        let mut hub = Hub::default();
        let _policy = hub.subscribe(&["whistle_policy"]);
        let _org = hub.subscribe(&["whistle_org", "whistle_people"]);
        let _again = hub.subscribe(&["whistle_people"]);
        assert_eq!(
            hub.channels(),
            ["whistle_org", "whistle_people", "whistle_policy"]
        );
    }

    /// Whether `wakeups` was woken (without waiting).
    async fn woken(wakeups: &mut Wakeups) -> bool {
        tokio::time::timeout(Duration::from_millis(20), wakeups.wait())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_notification_wakes_its_channel_s_followers_and_a_connection_wakes_all() {
        let mut hub = Hub::default();
        let mut policy = hub.subscribe(&["whistle_policy"]);
        let mut org = hub.subscribe(&["whistle_org", "whistle_people"]);
        assert!(!woken(&mut policy).await && !woken(&mut org).await);

        let notified = |channel: &str| Notice::Notified {
            channel: channel.to_owned(),
            payload: String::new(),
        };
        hub.deliver(&notified("whistle_people"));
        assert!(woken(&mut org).await);
        assert!(!woken(&mut policy).await);
        // Seen: no second wake-up for the same notification.
        assert!(!woken(&mut org).await);

        // Two before the follower looks are one wake-up: it reads whole anyway.
        hub.deliver(&notified("whistle_policy"));
        hub.deliver(&notified("whistle_policy"));
        assert!(woken(&mut policy).await);
        assert!(!woken(&mut policy).await);

        hub.deliver(&Notice::Connected);
        assert!(woken(&mut policy).await && woken(&mut org).await);
    }

    #[tokio::test]
    async fn a_stopped_hub_leaves_its_followers_waiting() {
        let mut hub = Hub::default();
        let mut policy = hub.subscribe(&["whistle_policy"]);
        drop(hub);
        assert!(!woken(&mut policy).await);
    }
}

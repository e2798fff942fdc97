//! The live boards' CPU (`GetScoreboard` and `ListOverdue` built from the aggregates) on threads
//! of their own, at a lower scheduling priority than the rest of the service.
//!
//! A board costs a millisecond or more of CPU; a crowd of callers asking for boards used to take
//! that CPU on the async workers, at the same priority as the light reads (`ListIncidents`,
//! `GetIncident`) and PostgreSQL serving them, and on two cores a light read waited 3× its time
//! beside sixteen board callers. Here boards queue for `threads` dedicated threads, each niced
//! by [`NICER_BY`], so that the kernel runs a light read's work (and PostgreSQL's) first and boards
//! take what CPU is left. The thread count bounds how many boards compute at once, as the
//! semaphore before it did.

use std::{
    panic::AssertUnwindSafe,
    sync::{mpsc, Arc, Mutex},
};

use crate::error::{Error, Result};

/// How much nicer the board threads are than the service's other threads: ≈ 1/9th of their CPU
/// weight when both want a core, and all of an idle one.
pub const NICER_BY: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of niced threads computing boards in turn.
#[derive(Clone)]
pub struct Boards {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Boards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boards").finish_non_exhaustive()
    }
}

impl Boards {
    /// Starts `threads` (at least one) board threads. They end when the last `Boards` is dropped.
    pub fn start(threads: u32) -> std::io::Result<Boards> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("whistle-board-{n}"))
                .spawn(move || work(&queue))?;
        }
        Ok(Boards { jobs })
    }

    /// Runs `board` on a board thread when one is free and returns what it returned.
    pub async fn run<T: Send + 'static>(
        &self,
        board: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                // A call cancelled while it queued (its client gone) costs nothing.
                if !answer.is_closed() {
                    let _ = answer.send(board());
                }
            }))
            .map_err(|_| Error::Unavailable("the service is shutting down".into()))?;
        // Dropped unanswered only if the board panicked (logged by `work`).
        answered.await.map_err(|_| {
            Error::Internal("computing the board failed; see the service's log".into())
        })
    }
}

fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a board computation panicked; its call answered INTERNAL");
        }
    }
}

/// Nices the calling thread by [`NICER_BY`] (at most to 19). On Linux the nice value belongs to
/// a thread and `setpriority(PRIO_PROCESS, tid)` sets that one thread's; lowering one's own
/// priority needs no privilege. A failure leaves boards at the service's priority, where they
/// still take turns.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    let nice = rustix::process::getpriority_process(Some(tid))
        .map_or(NICER_BY, |now| (now + NICER_BY).min(19));
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::warn!(error = %e, "could not lower a board thread's priority; boards run at the service's");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The board threads run at the lower priority, so the kernel prefers the light reads' work.
    #[tokio::test]
    async fn boards_run_on_their_own_niced_threads_and_return_their_answers() {
        let boards = Boards::start(2).unwrap();
        // getpriority(PRIO_PROCESS, 0) reads the calling thread's nice on Linux.
        let ours = rustix::process::getpriority_process(None).unwrap();
        let (name, nice) = boards
            .run(|| {
                let name = std::thread::current().name().map(str::to_owned);
                (name, rustix::process::getpriority_process(None).unwrap())
            })
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("whistle-board-")));
        assert_eq!(nice, (ours + NICER_BY).min(19));
        assert!(ours == 19 || nice > ours, "{nice} is not nicer than {ours}");
    }

    /// A board whose call was cancelled while it queued is never computed.
    #[tokio::test]
    async fn a_board_cancelled_while_queued_is_skipped() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let boards = Boards::start(1).unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        // The one thread is busy until released.
        let busy = tokio::spawn({
            let boards = boards.clone();
            async move { boards.run(move || held.recv().unwrap()).await }
        });
        let ran = Arc::new(AtomicBool::new(false));
        let queued = {
            let ran = ran.clone();
            let boards = boards.clone();
            tokio::spawn(async move { boards.run(move || ran.store(true, Ordering::SeqCst)).await })
        };
        tokio::task::yield_now().await;
        queued.abort();
        assert!(queued.await.unwrap_err().is_cancelled());
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        // The thread has taken the skipped job by the time the next board answers.
        assert_eq!(boards.run(|| 7).await.unwrap(), 7);
        assert!(!ran.load(Ordering::SeqCst));
    }

    /// A board that panics answers its caller with an error and leaves the thread serving.
    #[tokio::test]
    async fn a_panicking_board_fails_its_call_and_the_next_board_still_runs() {
        let boards = Boards::start(1).unwrap();
        let failed = boards.run(|| -> u32 { panic!("a broken board") }).await;
        assert!(matches!(failed, Err(Error::Internal(_))), "{failed:?}");
        assert_eq!(boards.run(|| 7).await.unwrap(), 7);
    }
}

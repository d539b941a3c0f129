//! The worker pool: a generic thread pool for blocking work (key lookups, token signing,
//! static file reads), so that no event loop ever blocks. It knows nothing of what the
//! jobs do.
//!
//! Event loops `try_send` a [`Job`] on a bounded crossbeam channel (a full queue is
//! answered 503 at once instead of blocking the loop). A worker runs it and sends the
//! [`Completion`] back to the loop that owns the connection, then wakes that loop through
//! its `mio::Waker`. [`ReplyTo`] carries the connection's serial number so that a reply
//! for a connection that closed meanwhile (and whose slab slot was reused) is dropped.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};

/// A connection's key in its event loop's slab, as it travels with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey(pub usize);

/// Identifies the connection a reply belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    pub shard: usize,
    pub conn: ConnKey,
    /// Told apart from a later connection in the same slab slot.
    pub serial: u64,
}

/// Blocking work whose result `R` goes back to the connection's event loop.
pub struct Job<R> {
    pub work: Box<dyn FnOnce() -> R + Send>,
    pub reply: ReplyTo,
}

impl<R> Job<R> {
    pub fn new(reply: ReplyTo, work: impl FnOnce() -> R + Send + 'static) -> Job<R> {
        Job { work: Box::new(work), reply }
    }
}

/// A finished job, for the event loop that owns `reply.conn`.
#[derive(Debug)]
pub struct Completion<R> {
    pub reply: ReplyTo,
    pub value: R,
}

/// Where a worker sends one event loop's completions.
pub struct Mailbox<R> {
    pub completions: Sender<Completion<R>>,
    pub waker: Arc<mio::Waker>,
}

/// Starts `n` workers reading `jobs`; `mailboxes[i]` reaches event loop `i`. They stop
/// when every sender of `jobs` is dropped.
pub fn start<R: Send + 'static>(
    n: usize,
    jobs: Receiver<Job<R>>,
    mailboxes: Vec<Mailbox<R>>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mailboxes = Arc::new(mailboxes);
    (0..n)
        .map(|i| {
            let (jobs, mailboxes) = (jobs.clone(), mailboxes.clone());
            thread::Builder::new().name(format!("worker-{i}")).spawn(move || {
                for job in jobs.iter() {
                    let value = (job.work)();
                    let Some(mailbox) = mailboxes.get(job.reply.shard) else { continue };
                    // A closed channel means the loop is shutting down; nothing to do.
                    if mailbox.completions.send(Completion { reply: job.reply, value }).is_ok() {
                        let _ = mailbox.waker.wake();
                    }
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_on_a_worker_and_its_completion_wakes_the_right_loop() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (job_tx, job_rx) = crossbeam_channel::bounded(4);
        let handles = start(2, job_rx, vec![Mailbox { completions: done_tx, waker }]).unwrap();
        let reply = ReplyTo { shard: 0, conn: ConnKey(3), serial: 9 };
        job_tx.send(Job::new(reply, || 6 * 7)).unwrap();
        let done = done_rx.recv().unwrap();
        assert_eq!((done.reply, done.value), (reply, 42));
        // A job for a loop that does not exist is dropped, not a panic.
        job_tx.send(Job::new(ReplyTo { shard: 5, ..reply }, || 1)).unwrap();
        drop(job_tx);
        for h in handles {
            h.join().unwrap();
        }
        assert!(done_rx.try_recv().is_err());
    }
}

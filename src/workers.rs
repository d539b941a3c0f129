//! The worker pool: a generic thread pool for blocking work (key lookups, token signing,
//! static file reads), so that no event loop ever blocks. It knows nothing of what the
//! jobs do.
//!
//! Event loops `try_send` a [`Job`] on a bounded queue ([`job_queue`]; a full queue is
//! answered 503 at once instead of blocking the loop). A worker runs it and sends the
//! [`Completion`] back to the loop that owns the connection, then wakes that loop through
//! its `mio::Waker`. [`ReplyTo`] carries the connection's serial number so that a reply
//! for a connection that closed meanwhile (and whose slab slot was reused) is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, SendError, Sender, TrySendError};

/// A connection's key in its event loop's slab (the index of its slot), in the loop and
/// as it travels with a job. Costs what a `usize` costs: the fan-out passes it around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
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

/// A queue of at most `capacity` jobs. Bounded by a count over crossbeam's list channel
/// rather than by `crossbeam_channel::bounded`, whose ring of `capacity` slots is written
/// in full when it is made (4,096 jobs: 192 KiB resident for good, on an idle server);
/// this one holds memory only for the jobs in it.
pub fn job_queue<R>(capacity: usize) -> (JobSender<R>, JobReceiver<R>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    (JobSender { tx, queued: queued.clone(), capacity }, JobReceiver { rx, queued })
}

/// The event loops' side of [`job_queue`].
pub struct JobSender<R> {
    tx: Sender<Job<R>>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl<R> JobSender<R> {
    /// Queues `job` unless `capacity` jobs are waiting (`Full`) or every worker is gone
    /// (`Disconnected`); never blocks.
    pub fn try_send(&self, job: Job<R>) -> Result<(), TrySendError<Job<R>>> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(TrySendError::Full(job));
        }
        self.tx.send(job).map_err(|SendError(job)| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected(job)
        })
    }
}

/// The workers' side of [`job_queue`].
pub struct JobReceiver<R> {
    rx: Receiver<Job<R>>,
    queued: Arc<AtomicUsize>,
}

// By hand: `derive` would ask `R: Clone`, which a job's result need not be.
impl<R> Clone for JobSender<R> {
    fn clone(&self) -> Self {
        JobSender { tx: self.tx.clone(), queued: self.queued.clone(), capacity: self.capacity }
    }
}

impl<R> Clone for JobReceiver<R> {
    fn clone(&self) -> Self {
        JobReceiver { rx: self.rx.clone(), queued: self.queued.clone() }
    }
}

impl<R> JobReceiver<R> {
    /// The next job, blocking; `None` once every sender is dropped and the queue is empty.
    fn recv(&self) -> Option<Job<R>> {
        let job = self.rx.recv().ok()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Some(job)
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

/// Starts `n` workers, threads named `{name}-{i}`, reading `jobs`; `mailboxes[i]`
/// reaches event loop `i`. They stop when every sender of `jobs` is dropped.
pub fn start<R: Send + 'static>(
    name: &str,
    n: usize,
    jobs: JobReceiver<R>,
    mailboxes: Vec<Mailbox<R>>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    start_with(name, n, jobs, mailboxes, || {})
}

/// [`start`], each thread first running `on_start` (a thread setting, its priority).
pub fn start_with<R: Send + 'static>(
    name: &str,
    n: usize,
    jobs: JobReceiver<R>,
    mailboxes: Vec<Mailbox<R>>,
    on_start: fn(),
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mailboxes = Arc::new(mailboxes);
    (0..n)
        .map(|i| {
            let (jobs, mailboxes) = (jobs.clone(), mailboxes.clone());
            thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                on_start();
                while let Some(job) = jobs.recv() {
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
        let (job_tx, job_rx) = job_queue(4);
        let handles =
            start("worker", 2, job_rx, vec![Mailbox { completions: done_tx, waker }]).unwrap();
        let reply = ReplyTo { shard: 0, conn: ConnKey(3), serial: 9 };
        job_tx.try_send(Job::new(reply, || 6 * 7)).unwrap();
        let done = done_rx.recv().unwrap();
        assert_eq!((done.reply, done.value), (reply, 42));
        // A job for a loop that does not exist is dropped, not a panic.
        job_tx.try_send(Job::new(ReplyTo { shard: 5, ..reply }, || 1)).unwrap();
        drop(job_tx);
        for h in handles {
            h.join().unwrap();
        }
        assert!(done_rx.try_recv().is_err());
    }

    #[test]
    fn the_queue_refuses_past_its_capacity_and_takes_jobs_again_once_one_is_taken() {
        let (tx, rx) = job_queue::<u8>(2);
        let reply = ReplyTo { shard: 0, conn: ConnKey(0), serial: 0 };
        tx.try_send(Job::new(reply, || 1)).unwrap();
        tx.clone().try_send(Job::new(reply, || 2)).unwrap();
        assert!(matches!(tx.try_send(Job::new(reply, || 3)), Err(TrySendError::Full(_))));
        assert_eq!(rx.recv().map(|job| (job.work)()), Some(1));
        tx.try_send(Job::new(reply, || 4)).unwrap();
        assert!(matches!(tx.try_send(Job::new(reply, || 5)), Err(TrySendError::Full(_))));
        assert_eq!(rx.recv().map(|job| (job.work)()), Some(2));
        assert_eq!(rx.recv().map(|job| (job.work)()), Some(4));
        drop(rx);
        assert!(matches!(tx.try_send(Job::new(reply, || 6)), Err(TrySendError::Disconnected(_))));
        // A refused job is not counted: the queue is empty, not full, after the refusals.
        assert_eq!(tx.queued.load(Ordering::Relaxed), 0);
    }
}

//! The worker pool: every piece of blocking work (the SQLite API-key lookup, token
//! signing, static file reads) runs here, never on an event loop.
//!
//! Event loops `try_send` a [`Job`] on a bounded crossbeam channel (a full queue is
//! answered 503 at once instead of blocking the loop). A worker runs it and sends the
//! [`Completion`] back to the loop that owns the connection, then wakes that loop through
//! its `mio::Waker`. The connection's serial number travels with the job so a reply for
//! a connection that closed meanwhile (and whose slab slot was reused) is dropped.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, OpenFlags};

use crate::auth::keys;
use crate::auth::ratelimit::LoginLimiter;
use crate::auth::token::{Actor, TokenError, TokenStore, unix_now};
use crate::error::HttpError;
use crate::http::response::Response;
use crate::http::routes::StaticRequest;
use crate::http::static_files;
use crate::metrics::{AuthOutcome, Metrics};

/// How long a worker waits on a locked database before answering 500.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Blocking work, by kind.
#[derive(Debug)]
pub enum Task {
    IssueToken { api_key: String, ip: IpAddr },
    Static(StaticRequest),
}

/// Identifies the connection a reply belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    pub shard: usize,
    pub conn: usize,
    pub serial: u64,
}

#[derive(Debug)]
pub struct Job {
    pub task: Task,
    pub reply: ReplyTo,
}

/// A finished job, for the event loop that owns `reply.conn`.
#[derive(Debug)]
pub struct Completion {
    pub reply: ReplyTo,
    pub response: Response,
}

/// Where a worker sends a shard's completions.
#[derive(Clone)]
pub struct ShardMailbox {
    pub completions: Sender<Completion>,
    pub waker: Arc<mio::Waker>,
}

/// What every worker shares.
pub struct WorkerContext {
    pub db_path: PathBuf,
    pub public_root: PathBuf,
    pub tokens: Arc<TokenStore>,
    pub limiter: Arc<LoginLimiter>,
    pub metrics: Arc<Metrics>,
    pub shards: Vec<ShardMailbox>,
}

/// Starts `n` workers reading `jobs`. They stop when every sender is dropped.
pub fn start(
    n: usize,
    jobs: Receiver<Job>,
    ctx: Arc<WorkerContext>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..n)
        .map(|i| {
            let (jobs, ctx) = (jobs.clone(), ctx.clone());
            thread::Builder::new().name(format!("worker-{i}")).spawn(move || {
                let mut db = Database::new(ctx.db_path.clone());
                for job in jobs.iter() {
                    let response = run(&job.task, &ctx, &mut db);
                    let Some(shard) = ctx.shards.get(job.reply.shard) else { continue };
                    // A closed channel means the loop is shutting down; nothing to do.
                    if shard.completions.send(Completion { reply: job.reply, response }).is_ok() {
                        let _ = shard.waker.wake();
                    }
                }
            })
        })
        .collect()
}

fn run(task: &Task, ctx: &WorkerContext, db: &mut Database) -> Response {
    match task {
        Task::IssueToken { api_key, ip } => match issue_token(api_key, *ip, ctx, db) {
            Ok(r) => r,
            Err(e) => Response::error(&e),
        },
        Task::Static(req) => static_files::serve(&ctx.public_root, req),
    }
}

/// The `/auth/token` exchange after the body was parsed: rate limit, SQLite, sign.
fn issue_token(
    api_key: &str,
    ip: IpAddr,
    ctx: &WorkerContext,
    db: &mut Database,
) -> Result<Response, HttpError> {
    let now = Instant::now();
    if let Err(retry_after_secs) = ctx.limiter.check(ip, now) {
        ctx.metrics.auth(AuthOutcome::RateLimited);
        return Err(HttpError::TooManyRequests { retry_after_secs });
    }
    let record =
        db.lookup(api_key).inspect_err(|_| ctx.metrics.auth(AuthOutcome::DatabaseError))?;
    let Some(record) = record else {
        ctx.limiter.record_failure(ip, now);
        ctx.metrics.auth(AuthOutcome::InvalidKey);
        return Err(HttpError::InvalidApiKey);
    };
    let actor = Actor {
        id: format!("user:{}", record.user_id),
        user_id: record.user_id.clone(),
        role: record.role.clone(),
    };
    match ctx.tokens.issue(actor, record.id, ip.to_string(), unix_now()) {
        Ok(issued) => {
            ctx.metrics.auth(AuthOutcome::Issued);
            crate::info!(
                "token issued",
                user_id = record.user_id,
                ip = ip,
                token = TokenStore::fingerprint(&issued.token)
            );
            Ok(Response::json(
                200,
                &serde_json::json!({
                    "token": issued.token,
                    "user_id": record.user_id,
                    "role": record.role,
                    "expires_in": issued.expires_in,
                }),
            ))
        }
        Err(TokenError::StoreFull) => {
            ctx.metrics.auth(AuthOutcome::StoreFull);
            crate::warn!("token table full", live_tokens = ctx.tokens.len());
            Err(HttpError::TokenStoreUnavailable)
        }
        Err(e) => {
            crate::error!("token issue failed", error = format!("{e:?}"));
            Err(HttpError::Internal)
        }
    }
}

/// A worker's own SQLite connection, reopened when the file goes away or is replaced,
/// so the server recovers by itself once the database is back.
struct Database {
    path: PathBuf,
    open: Option<(Connection, u64)>,
}

impl Database {
    fn new(path: PathBuf) -> Database {
        Database { path, open: None }
    }

    fn lookup(&mut self, api_key: &str) -> Result<Option<keys::ApiKeyRecord>, HttpError> {
        // The file's inode tells a deleted or replaced database from the one we hold.
        let inode = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.ino(),
            Err(e) => {
                self.open = None;
                crate::warn!("database unavailable", path = self.path.display(), error = e);
                return Err(HttpError::DatabaseUnavailable);
            }
        };
        if self.open.as_ref().is_some_and(|(_, ino)| *ino != inode) {
            self.open = None;
        }
        if self.open.is_none() {
            let conn = open_existing(&self.path).map_err(|e| {
                crate::warn!("database unavailable", path = self.path.display(), error = e);
                HttpError::DatabaseUnavailable
            })?;
            self.open = Some((conn, inode));
        }
        let Some((conn, _)) = &self.open else { return Err(HttpError::DatabaseUnavailable) };
        keys::lookup(conn, api_key).map_err(|e| {
            crate::warn!("database query failed", error = e);
            // Drop the connection: the next request opens a fresh one.
            self.open = None;
            HttpError::DatabaseUnavailable
        })
    }
}

/// Opens the database without creating it: a missing file is an error here, not an
/// empty database (only start-up migration creates it).
fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Fail now, not on the first query, when the file is not a database.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    Ok(conn)
}

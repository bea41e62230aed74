//! CPU time per process group, read from `/proc`: a snapshot at each end of a measured window,
//! and the difference divided by the messages delivered in it.
//!
//! A process's CPU is `utime + stime` of `/proc/<pid>/stat` (every thread of the process,
//! live and exited), in clock ticks of `sysconf(_SC_CLK_TCK)`. Processes are told apart as:
//!
//! - intake / worker: the child processes the bench started;
//! - Postgres: every process named `postgres`; backends are split by `pg_stat_activity` —
//!   the intake's and the workers' (by their `application_name`, set by the bench), the
//!   shared processes (postmaster, WAL writer, checkpointer, autovacuum of the bench database,
//!   …), and, not counted, the bench's own polling connections and backends of other databases
//!   (other people's tests on a shared server);
//! - RabbitMQ: `beam.smp` and its helpers (`erl_child_setup`, `inet_gethost`, `epmd`);
//! - Redis: `redis-server`;
//! - the bench process itself (load generator and provider stub), shown, not counted.
//!
//! A process that exits inside the window takes its CPU with it (its parent only gets it when
//! it reaps it, as `cutime`): [`Usage::vanished`] counts such processes of counted groups so a
//! report can say so. The service's pools keep their connections for 5 minutes idle, longer
//! than a window, and the bench warms them up before measuring.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::stack::{BENCH_APP, INTAKE_APP, WORKER_APP};

/// Where a process's CPU is booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Intake,
    Worker,
    PgIntake,
    PgWorker,
    PgShared,
    RabbitMq,
    Redis,
    /// Not counted: the bench's own connections' backends.
    PgBench,
    /// Not counted: backends of other databases.
    PgOther,
    /// Not counted: this process (load generator and stub).
    Bench,
}

impl Class {
    /// The classes whose CPU is the pipeline's.
    pub const COUNTED: [Class; 7] = [
        Class::Intake,
        Class::Worker,
        Class::PgIntake,
        Class::PgWorker,
        Class::PgShared,
        Class::RabbitMq,
        Class::Redis,
    ];
    pub const NOT_COUNTED: [Class; 3] = [Class::Bench, Class::PgBench, Class::PgOther];

    pub fn label(self) -> &'static str {
        match self {
            Class::Intake => "intake",
            Class::Worker => "worker",
            Class::PgIntake => "postgres: intake's backends",
            Class::PgWorker => "postgres: worker's backends",
            Class::PgShared => "postgres: postmaster, WAL, checkpointer, autovacuum",
            Class::RabbitMq => "rabbitmq (beam.smp + helpers)",
            Class::Redis => "redis-server",
            Class::PgBench => "postgres: the bench's polling backends",
            Class::PgOther => "postgres: other databases' backends",
            Class::Bench => "bench process (load generator + stub)",
        }
    }

    pub fn is_postgres(self) -> bool {
        matches!(self, Class::PgIntake | Class::PgWorker | Class::PgShared)
    }
}

/// Clock ticks per second of `utime`/`stime`.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// The processes the bench knows by id, and the database whose backends are its own.
#[derive(Debug, Clone)]
pub struct Known {
    pub intake: Vec<u32>,
    pub workers: Vec<u32>,
    pub database: String,
}

/// One process's CPU at a moment: keyed by pid and start time, so a reused pid is another
/// process.
type Key = (u32, u64);

#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    procs: HashMap<Key, (Class, u64)>,
    /// Busy ticks of the whole machine (`/proc/stat`, all CPUs, everything but idle and
    /// iowait).
    machine_busy: u64,
}

/// Fields of `/proc/<pid>/stat` after the `(comm)`: state is index 0, so field N of proc(5)
/// is index N - 3.
struct Stat {
    comm: String,
    ticks: u64,
    start: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(Stat {
        comm,
        ticks: field(14)? + field(15)?,
        start: field(22)?,
    })
}

fn machine_busy() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal …
    line.split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

/// Postgres backends by pid: (database, application_name).
async fn backends(pool: &PgPool) -> anyhow::Result<HashMap<u32, (Option<String>, String)>> {
    let rows: Vec<(i32, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT pid, datname::text, application_name FROM pg_stat_activity")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(pid, db, app)| {
            Some((u32::try_from(pid).ok()?, (db, app.unwrap_or_default())))
        })
        .collect())
}

fn classify(
    pid: u32,
    comm: &str,
    known: &Known,
    backends: &HashMap<u32, (Option<String>, String)>,
) -> Option<Class> {
    if known.intake.contains(&pid) {
        return Some(Class::Intake);
    }
    if known.workers.contains(&pid) {
        return Some(Class::Worker);
    }
    if pid == std::process::id() {
        return Some(Class::Bench);
    }
    match comm {
        "postgres" => Some(match backends.get(&pid) {
            Some((Some(db), _)) if *db != known.database => Class::PgOther,
            Some((_, app)) if app == INTAKE_APP => Class::PgIntake,
            Some((_, app)) if app == WORKER_APP => Class::PgWorker,
            Some((_, app)) if app == BENCH_APP => Class::PgBench,
            _ => Class::PgShared,
        }),
        "beam.smp" | "erl_child_setup" | "inet_gethost" | "epmd" => Some(Class::RabbitMq),
        "redis-server" => Some(Class::Redis),
        _ => None,
    }
}

/// Reads every process of interest.
pub async fn snapshot(pool: &PgPool, known: &Known) -> anyhow::Result<Snapshot> {
    let backends = backends(pool).await?;
    let mut procs = HashMap::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(stat) = read_stat(pid) else {
            continue;
        };
        if let Some(class) = classify(pid, &stat.comm, known, &backends) {
            procs.insert((pid, stat.start), (class, stat.ticks));
        }
    }
    Ok(Snapshot {
        at: Instant::now(),
        procs,
        machine_busy: machine_busy(),
    })
}

/// CPU used between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub elapsed: Duration,
    /// Ticks per class.
    pub ticks: HashMap<Class, u64>,
    /// Processes of counted classes that exited inside the window (their CPU is missing).
    pub vanished: usize,
    /// Busy ticks of the whole machine, all CPUs.
    pub machine_ticks: u64,
    pub ticks_per_sec: u64,
}

impl Usage {
    pub fn between(start: &Snapshot, end: &Snapshot) -> Usage {
        let mut ticks: HashMap<Class, u64> = HashMap::new();
        for (key, (class, t)) in &end.procs {
            let before = start.procs.get(key).map(|(_, t)| *t).unwrap_or(0);
            *ticks.entry(*class).or_default() += t.saturating_sub(before);
        }
        let vanished = start
            .procs
            .iter()
            .filter(|(key, (class, _))| {
                !end.procs.contains_key(key) && Class::COUNTED.contains(class)
            })
            .count();
        Usage {
            elapsed: end.at.saturating_duration_since(start.at),
            ticks,
            vanished,
            machine_ticks: end.machine_busy.saturating_sub(start.machine_busy),
            ticks_per_sec: clock_ticks_per_sec(),
        }
    }

    fn ms(&self, ticks: u64) -> f64 {
        ticks as f64 * 1000.0 / self.ticks_per_sec as f64
    }

    /// CPU milliseconds of a class in the window.
    pub fn class_ms(&self, class: Class) -> f64 {
        self.ms(self.ticks.get(&class).copied().unwrap_or(0))
    }

    /// CPU milliseconds of every Postgres class counted.
    pub fn postgres_ms(&self) -> f64 {
        Class::COUNTED
            .iter()
            .filter(|c| c.is_postgres())
            .map(|c| self.class_ms(*c))
            .sum()
    }

    /// CPU milliseconds of every counted class.
    pub fn total_ms(&self) -> f64 {
        Class::COUNTED.iter().map(|c| self.class_ms(*c)).sum()
    }

    /// CPU milliseconds of the whole machine (every process, every CPU).
    pub fn machine_ms(&self) -> f64 {
        self.ms(self.machine_ticks)
    }

    /// `ms` of CPU over the window as a share of one CPU, in percent.
    pub fn percent_of_one_cpu(&self, ms: f64) -> f64 {
        100.0 * ms / (self.elapsed.as_secs_f64() * 1000.0).max(1e-9)
    }
}

//! `communication bench` runs end to end with a tiny load and prints every figure and target.
//! A correctness test of the command, not a measurement: no figure is compared to a target.

use std::process::Command;

use uuid::Uuid;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[test]
fn bench_runs_end_to_end_with_a_tiny_load_and_prints_every_figure() {
    let namespace = format!("test-{}", Uuid::new_v4().simple());
    let output = Command::new(env!("CARGO_BIN_EXE_communication"))
        .args([
            "bench",
            "--messages",
            "50",
            "--concurrency",
            "4",
            "--rate",
            "50",
            "--rate-seconds",
            "1",
            "--workers",
            "1",
            "--namespace",
            &namespace,
        ])
        .env("DATABASE_URL", PG_ADMIN)
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    for label in [
        "machine: ",
        "load average",
        "postgres sslmode=",
        "raw broker publish+consume",
        "raw postgres writer rows",
        "intake fixed-rate 50 req/s p50 / p99",
        "intake closed-loop workers=1 req/s",
        "end-to-end http workers=1",
        "end-to-end direct workers=1",
        "accept->sent p50",
        "direct publish workers=1",
        "worker peak RSS workers=1",
        "intake peak RSS",
        "target end-to-end >= 50% of raw broker",
        "target intake p99 < 10 ms at 50 req/s",
        "target worker RSS < 100 MB at prefetch 500",
    ] {
        assert!(
            stdout.contains(label),
            "missing {label:?} in the report:\n{stdout}"
        );
    }
    // Every message of the run was accounted for: 50 fixed-rate sends, nothing refused.
    assert!(
        stdout.contains("(50 accepted, 0 refused"),
        "fixed-rate phase lost sends:\n{stdout}"
    );
    // The stack was removed: the run's database is gone.
    let db_name = stderr
        .split_whitespace()
        .find(|w| w.starts_with("bench_"))
        .expect("the bench names its database on stderr");
    let left = Command::new("psql")
        .args([
            PG_ADMIN,
            "-Atc",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db_name}'"),
        ])
        .output()
        .expect("psql runs");
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "0");
}

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

/// The numbers of the CPU table's row that starts with `label`.
fn table_row(stdout: &str, label: &str) -> Vec<f64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} row in the report:\n{stdout}"));
    line[label.len()..]
        .split_whitespace()
        .map(|v| {
            v.parse::<f64>()
                .unwrap_or_else(|_| panic!("{v:?} in {line:?}"))
        })
        .collect()
}

#[test]
fn bench_http_scenario_delivers_through_the_stub_and_prints_cpu_per_message() {
    let namespace = format!("test-{}", Uuid::new_v4().simple());
    let output = Command::new(env!("CARGO_BIN_EXE_communication"))
        .args([
            "bench",
            "--scenario",
            "http",
            "--messages",
            "200",
            "--concurrency",
            "4",
            "--rate",
            "50",
            "--duration",
            "2",
            "--namespace",
            &namespace,
        ])
        .env("DATABASE_URL", format!("{PG_ADMIN}?sslmode=disable"))
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
        "clock ticks/s",
        "resend sat intake",
        "resend sat end-to-end",
        "resend 50/s intake",
        "resend 50/s end-to-end",
        "system sat end-to-end",
        "system 50/s end-to-end",
        "target http CPU <= 0.4 ms/msg at saturation",
        "target http CPU <= 1.0 ms/msg at 1000 msg/s",
        "target http end-to-end >= 3500 msg/s, 1 worker",
        "target http intake p99 < 10 ms at 1000 req/s",
    ] {
        assert!(
            stdout.contains(label),
            "missing {label:?} in the report:\n{stdout}"
        );
    }
    // Every resend delivery went through the stub: 200 warm-up, 200 closed loop, 100 at 50/s.
    let calls: u64 = stdout
        .split("calls answered")
        .next()
        .and_then(|s| s.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stub call count in:\n{stdout}"));
    assert!(calls >= 500, "the stub answered {calls} calls:\n{stdout}");
    // Each window delivered every message it accepted, at a positive rate.
    for (label, sent) in [
        ("resend sat end-to-end", 200),
        ("resend 50/s end-to-end", 100),
        ("system sat end-to-end", 200),
        ("system 50/s end-to-end", 100),
    ] {
        let line = stdout.lines().find(|l| l.starts_with(label)).expect(label);
        assert!(
            line.contains(&format!("({sent} sent in")),
            "{line:?}\n{stdout}"
        );
        let rate: f64 = line[label.len()..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        assert!(rate > 0.0, "{line:?}");
    }
    // The CPU table has every group, one figure per window plus the idle column, and the
    // service's own processes used CPU in every window.
    for label in [
        "intake ",
        "worker ",
        "postgres: intake's backends",
        "postgres: worker's backends",
        "  postgres total",
        "rabbitmq (beam.smp + helpers)",
        "redis-server",
        "TOTAL (intake + worker + postgres + rabbitmq + redis)",
        "  bench process (load generator + stub)",
    ] {
        let figures = table_row(&stdout, label);
        assert_eq!(figures.len(), 5, "{label:?}: {figures:?}\n{stdout}");
        assert!(figures.iter().all(|f| *f >= 0.0), "{label:?}: {figures:?}");
    }
    let total = table_row(
        &stdout,
        "TOTAL (intake + worker + postgres + rabbitmq + redis)",
    );
    assert!(
        total[..4].iter().all(|f| *f > 0.0),
        "a window without CPU: {total:?}\n{stdout}"
    );
    // Clock ticks are 10 ms: a tiny window of one process may round to zero, the run not.
    for label in ["intake ", "worker ", "  postgres total"] {
        let figures = table_row(&stdout, label);
        assert!(
            figures[..4].iter().sum::<f64>() > 0.0,
            "{label:?} used no CPU: {figures:?}\n{stdout}"
        );
    }
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

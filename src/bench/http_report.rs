//! The report of the HTTP scenario: figures per window, the CPU-per-message table, and the
//! issue-13 targets.

use std::fmt::Write as _;
use std::time::Duration;

use super::cpu::{Class, clock_ticks_per_sec};
use super::http::{Phase, ProviderCase, Report, Setting};
use super::{memory_total, ms, verdict};

/// Targets of issue 13, for delivery through an HTTP provider with one worker.
const TARGET_CPU_SATURATION_MS: f64 = 0.4;
const TARGET_CPU_STEADY_MS: f64 = 1.0;
const TARGET_E2E_PER_SEC: f64 = 3_500.0;
const TARGET_INTAKE_P99: Duration = Duration::from_millis(10);
const TARGET_RATE: u32 = 1_000;

fn column(p: &Phase, rate: u32) -> String {
    match p.setting {
        Setting::Saturation => format!("{} sat", p.case.name()),
        Setting::Steady => format!("{} {rate}/s", p.case.name()),
    }
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let a = &r.args;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "communication bench --scenario http ({})",
        chrono::Utc::now().to_rfc3339()
    );
    let _ = writeln!(
        out,
        "machine: {cpus} CPUs, {} RAM, load average {} before, {} after; {} clock ticks/s",
        memory_total(),
        r.load_before,
        r.load_after,
        clock_ticks_per_sec()
    );
    let _ = writeln!(
        out,
        "settings: messages={} concurrency={} rate={}/s for {} s workers=1 prefetch={} log={} \
         namespace={} postgres sslmode={} autovacuum={} (ANALYZE before each window) \
         runtime threads={}",
        a.messages,
        a.concurrency,
        a.rate,
        a.duration,
        a.prefetch,
        a.log_level,
        r.namespace,
        r.sslmode,
        r.autovacuum,
        runtime_threads()
    );
    let _ = writeln!(
        out,
        "provider stub: {} (Resend-shaped POST /emails), {} calls answered",
        r.stub_url, r.stub_requests
    );
    let _ = writeln!(out);
    let row = |out: &mut String, label: &str, value: String| {
        let _ = writeln!(out, "{label:<44} {value}");
    };
    for p in &r.phases {
        let label = column(p, a.rate);
        let i = &p.intake;
        let intake = match p.setting {
            Setting::Saturation => format!("{:.0} req/s", i.per_sec()),
            Setting::Steady => format!("achieved {:.0} req/s", i.per_sec()),
        };
        row(
            &mut out,
            &format!("{label} intake"),
            format!(
                "{intake}, p50 {} / p99 {} ({} accepted, {} refused)",
                ms(i.latencies.percentile(0.5)),
                ms(i.latencies.percentile(0.99)),
                i.accepted,
                i.errors
            ),
        );
        row(
            &mut out,
            &format!("{label} end-to-end"),
            format!(
                "{:.0} msg/s ({} sent in {:.2} s), accept->sent p50 {} / p99 {}",
                p.e2e.per_sec(),
                p.e2e.messages,
                p.e2e.span.as_secs_f64(),
                ms(p.e2e.accept_to_sent_p50),
                ms(p.e2e.accept_to_sent_p99)
            ),
        );
    }
    let _ = writeln!(out);
    cpu_table(&mut out, r);
    let _ = writeln!(out);
    targets(&mut out, r);
    out
}

fn cpu_table(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "CPU per delivered message, ms (utime+stime from /proc over each window; \
         idle = ms of CPU per second before the windows)"
    );
    let mut header = format!("{:<54}", "group");
    for p in &r.phases {
        let _ = write!(header, " {:>13}", column(p, r.args.rate));
    }
    let _ = write!(header, " {:>13}", "idle ms/s");
    let _ = writeln!(out, "{header}");
    let idle_secs = r.idle.elapsed.as_secs_f64().max(1e-9);
    let line = |out: &mut String, label: &str, per: &dyn Fn(&Phase) -> f64, idle: f64| {
        let mut s = format!("{label:<54}");
        for p in &r.phases {
            let _ = write!(s, " {:>13.3}", p.per_message(per(p)));
        }
        let _ = write!(s, " {:>13.1}", idle / idle_secs);
        let _ = writeln!(out, "{s}");
    };
    for class in Class::COUNTED {
        line(
            out,
            class.label(),
            &|p| p.cpu.class_ms(class),
            r.idle.class_ms(class),
        );
        if class == Class::PgShared {
            line(
                out,
                "  postgres total",
                &|p| p.cpu.postgres_ms(),
                r.idle.postgres_ms(),
            );
        }
    }
    line(
        out,
        "TOTAL (intake + worker + postgres + rabbitmq + redis)",
        &|p| p.cpu.total_ms(),
        r.idle.total_ms(),
    );
    let _ = writeln!(out, "not counted:");
    for class in Class::NOT_COUNTED {
        line(
            out,
            &format!("  {}", class.label()),
            &|p| p.cpu.class_ms(class),
            r.idle.class_ms(class),
        );
    }
    line(
        out,
        "  machine, every process on every CPU",
        &|p| p.cpu.machine_ms(),
        r.idle.machine_ms(),
    );
    let mut window = format!("{:<54}", "window, s");
    let mut share = format!("{:<54}", "counted CPU in the window, % of one CPU");
    let mut vanished = format!("{:<54}", "counted processes that exited in the window");
    for p in &r.phases {
        let _ = write!(window, " {:>13.2}", p.cpu.elapsed.as_secs_f64());
        let _ = write!(
            share,
            " {:>13.0}",
            p.cpu.percent_of_one_cpu(p.cpu.total_ms())
        );
        let _ = write!(vanished, " {:>13}", p.cpu.vanished);
    }
    let _ = writeln!(out, "{window}\n{share}\n{vanished}");
}

fn targets(out: &mut String, r: &Report) {
    let row = |out: &mut String, label: &str, value: String| {
        let _ = writeln!(out, "{label:<58} {value}");
    };
    let find = |setting| {
        r.phases
            .iter()
            .find(|p| p.case == ProviderCase::Resend && p.setting == setting)
    };
    let not_measured = || "not measured (the resend case was not run)".to_owned();
    let rate_note = if r.args.rate == TARGET_RATE {
        String::new()
    } else {
        format!(" (measured at {}/s, not {TARGET_RATE}/s)", r.args.rate)
    };
    let sat = find(Setting::Saturation);
    let steady = find(Setting::Steady);
    row(
        out,
        "target http CPU <= 0.4 ms/msg at saturation",
        sat.map_or_else(not_measured, |p| {
            let total = p.per_message(p.cpu.total_ms());
            format!(
                "{} {total:.3} ms",
                verdict(total <= TARGET_CPU_SATURATION_MS)
            )
        }),
    );
    row(
        out,
        "target http CPU <= 1.0 ms/msg at 1000 msg/s",
        steady.map_or_else(not_measured, |p| {
            let total = p.per_message(p.cpu.total_ms());
            format!(
                "{} {total:.3} ms{rate_note}",
                verdict(total <= TARGET_CPU_STEADY_MS && r.args.rate == TARGET_RATE)
            )
        }),
    );
    row(
        out,
        "target http end-to-end >= 3500 msg/s, 1 worker",
        sat.map_or_else(not_measured, |p| {
            let rate = p.e2e.per_sec();
            format!("{} {rate:.0} msg/s", verdict(rate >= TARGET_E2E_PER_SEC))
        }),
    );
    row(
        out,
        "target http intake p99 < 10 ms at 1000 req/s",
        steady.map_or_else(not_measured, |p| {
            let i = &p.intake;
            let p99 = i.latencies.percentile(0.99);
            let achieved = i.per_sec() >= 0.95 * f64::from(r.args.rate) && i.errors == 0;
            format!(
                "{} p99 {}{rate_note}{}",
                verdict(p99 < TARGET_INTAKE_P99 && achieved && r.args.rate == TARGET_RATE),
                ms(p99),
                if achieved { "" } else { " (rate not achieved)" }
            )
        }),
    );
}

/// The children's tokio worker threads: `TOKIO_WORKER_THREADS` when set (they inherit it),
/// else tokio's default of one per CPU.
fn runtime_threads() -> String {
    match std::env::var("TOKIO_WORKER_THREADS") {
        Ok(n) => format!("{n} (TOKIO_WORKER_THREADS)"),
        Err(_) => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            format!("{cpus} (one per CPU, tokio's default)")
        }
    }
}

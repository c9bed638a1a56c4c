//! The harness's command line: a seed names its schedule, so a failure's seed
//! reruns exactly what failed (RELIABILITY.md, "Fault schedules").
//!
//! Being an integration test, it also makes `cargo test --workspace` build the
//! `courier-chaos` binary with the suite's features, which `./dev chaos` then
//! runs without building the workspace's crates a second time.

use std::process::{Command, Output};

fn chaos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_courier-chaos"))
        .args(args)
        .output()
        .expect("courier-chaos runs")
}

fn plan(backend: &str, seed: u64, schedules: u64) -> String {
    let out = chaos(&[
        "--plan",
        "--backend",
        backend,
        "--seed",
        &seed.to_string(),
        "--schedules",
        &schedules.to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("the plan is UTF-8")
}

#[test]
fn a_seed_draws_the_same_schedule_every_time() {
    for backend in ["embedded", "kafka-cassandra"] {
        let three = plan(backend, 5, 3);
        assert!(!three.trim().is_empty(), "{backend}: an empty plan");
        assert_eq!(three, plan(backend, 5, 3), "{backend}: seed 5 drew twice");
        // Schedule N of a batch is seed N's own: the batch 5..=7 holds 6 alone.
        let six = plan(backend, 6, 1);
        assert!(
            three.contains(&six),
            "{backend}: seed 6 alone:\n{six}\nin:\n{three}"
        );
        // Two seeds draw different schedules, not only differently named ones
        // (each plan's first line names its seed).
        let body = |plan: &str| plan.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_ne!(
            body(&plan(backend, 5, 1)),
            body(&six),
            "{backend}: seeds 5 and 6 drew alike"
        );
    }
}

#[test]
fn a_missing_courier_binary_or_backend_is_refused_by_name() {
    let out = chaos(&["--courier", "/nonexistent/courier", "--schedules", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/courier does not exist"), "{err}");

    let out = chaos(&["--plan", "--backend", "cassandra"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cassandra") && err.contains("kafka-cassandra"),
        "{err}"
    );
}

//! The crash harness's long run: `CASCADE_CRASH_ROUNDS` (default 100) rounds of
//! `kill -9` and restart of a random node of a five-process federation under a
//! mixed load of registrations, publishes, applications and decisions, service
//! calls and dataset fetches (see `cascade_tests::crash`).
//!
//! `cargo bench -p cascade-node --bench crash`

use cascade_tests::crash::crash_rounds;
use cascade_tests::process::Processes;
use cascade_tests::FOUR_PROVINCES;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = std::env::var("CASCADE_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let seed = std::env::var("CASCADE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let started = Instant::now();
    let mut processes =
        Processes::launch(FOUR_PROVINCES, std::path::Path::new(env!("CARGO_BIN_EXE_cascade"))).await;
    let report = crash_rounds(&mut processes, ("110000", "370200"), rounds, seed).await;
    println!(
        "five `cascade run` processes (topology FOUR_PROVINCES), seed {seed}, {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("  kill -9 and restart rounds     {}", report.rounds);
    println!("  acknowledged writes            {}", report.acknowledged);
    println!("  found at their origin after    {}", report.found);
    println!("  lost                           {}", report.acknowledged - report.found);
    println!("  forks flagged                  {}", report.forks);
    println!("  broken chains flagged          {}", report.broken_chains);
    let d = &report.docking;
    println!("  applications acknowledged      {} (granted in the end {})", d.applications, d.granted);
    println!(
        "  applications applied twice     {} (received by the provider {})",
        d.applied_twice, d.received
    );
    println!("  calls answered                 {} (reached the upstream once {})", d.calls, d.calls_once);
    println!(
        "  calls reaching it twice        {} (answered with another body {})",
        d.calls_twice, d.calls_altered
    );
    println!("  dataset versions acknowledged  {} (fetched intact {})", d.versions, d.versions_fetched);
    println!("  fetches with wrong bytes       {}", d.wrong_bytes);
    assert_eq!(report.found, report.acknowledged, "acknowledged writes were lost");
    assert_eq!(report.forks + report.broken_chains, 0, "a fork or a broken chain was flagged");
    assert!(d.applications > 0 && d.calls > 0 && d.versions > 0, "the docking load did nothing");
    assert_eq!(d.granted, d.applications, "acknowledged applications were lost");
    assert_eq!(d.received, d.applications, "the provider's audit log misses applications");
    assert_eq!(
        (d.applied_twice, d.calls_twice, d.calls_altered, d.wrong_bytes),
        (0, 0, 0, 0),
        "something applied twice or corrupted"
    );
    assert_eq!((d.calls_once, d.versions_fetched), (d.calls, d.versions), "a call or a version was lost");
}

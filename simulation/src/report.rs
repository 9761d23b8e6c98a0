//! The report of a run: printed as a summary, written as JSON.

use crate::invariants::Outcome;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Convergence time of changes: from acknowledgement at the origin until every
/// node that should hold the change made it durable.
#[derive(Debug, Default, Serialize)]
pub struct Convergence {
    /// Changes that reached every holder.
    pub converged: usize,
    /// Changes acknowledged.
    pub acknowledged: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

impl Convergence {
    /// From sorted samples in ms.
    pub fn from_ms(sorted: &[u64], acknowledged: u64) -> Convergence {
        let at = |p: f64| {
            if sorted.is_empty() {
                0.0
            } else {
                sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
            }
        };
        Convergence {
            converged: sorted.len(),
            acknowledged,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: sorted.last().copied().unwrap_or(0) as f64,
        }
    }
}

/// One sample of a real run's timeline, taken every few seconds from the first
/// step on: how much memory the federation holds and how far behind it is.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sample {
    /// Seconds since the first step began.
    pub at_s: f64,
    /// Resident memory of the process.
    pub rss_bytes: u64,
    /// Changes acknowledged so far.
    pub acknowledged: u64,
    /// Acknowledged changes not yet durable at every node that should hold them.
    pub travelling: usize,
    /// How long the oldest of those has been travelling, ms: the lag.
    pub oldest_ms: u64,
    /// 99th percentile of the convergence times of the changes that converged
    /// since the previous sample, ms.
    pub p99_ms: u64,
    /// Calls answered 200 so far.
    pub calls_served: u64,
}

/// What nodes run as processes of their own went through (real mode).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcessKills {
    /// SIGKILLs sent.
    pub kills: u64,
    /// Changes acknowledged at those nodes (through their admin API).
    pub acknowledged: u64,
}

/// Everything a run measured and concluded.
#[derive(Debug, Serialize)]
pub struct Report {
    /// "deterministic" or "real".
    pub mode: String,
    /// Topology name.
    pub topology: String,
    /// Nodes in the topology.
    pub nodes: usize,
    /// Scenario name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Changes acknowledged at their origin.
    pub changes_acknowledged: u64,
    /// Wall-clock duration of the run.
    pub wall_seconds: f64,
    /// Simulated duration (deterministic) or the same as wall (real).
    pub simulated_seconds: f64,
    /// Convergence times.
    pub convergence: Convergence,
    /// Frames sent between nodes while the scenario ran (real mode: from its
    /// first step, the start-up's joins and catch-ups excluded).
    pub frames: u64,
    /// Bytes of those frames (encoded size plus length prefix).
    pub bytes: u64,
    /// Bytes per acknowledged change.
    pub bytes_per_change: f64,
    /// Frames per acknowledged change.
    pub frames_per_change: f64,
    /// Deltas refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Logs handed over to a new key by their origin (deterministic mode).
    pub hand_overs: u64,
    /// Nodes run as processes of their own and crashed by SIGKILL (real mode
    /// with processes): kills, and changes acknowledged at those nodes.
    pub process_kills: ProcessKills,
    /// Service versions registered by their providers' nodes (deterministic mode).
    pub services: u64,
    /// Applications by state, each counted at its consumer's node (deterministic mode).
    pub applications: BTreeMap<String, u64>,
    /// Workflow commands that succeeded: applications, decisions, withdrawals,
    /// revocations (deterministic mode).
    pub workflow_steps: u64,
    /// Service calls, by outcome (deterministic mode).
    pub calls: crate::CallTally,
    /// Dataset versions published and fetched (deterministic mode).
    pub datasets: crate::DatasetTally,
    /// Digest of the trace of delivered frames (deterministic mode: replay check).
    pub trace_digest: String,
    /// Peak resident memory of the process.
    pub peak_rss_bytes: u64,
    /// Real mode: memory the federation took once linked up and idle (RSS growth
    /// over the process before launch); 0 in deterministic mode.
    pub idle_rss_bytes: u64,
    /// Real mode: memory and lag over time (empty in deterministic mode).
    pub timeline: Vec<Sample>,
    /// The invariants.
    pub invariants: Outcome,
}

/// Peak resident set size of this process (VmHWM), 0 where unknown.
pub fn peak_rss() -> u64 {
    proc_status_kib("VmHWM:") * 1024
}

/// Current resident set size of this process (VmRSS), 0 where unknown.
pub fn current_rss() -> u64 {
    proc_status_kib("VmRSS:") * 1024
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "{} run of {:?} on {:?} ({} nodes), seed {}",
            self.mode, self.scenario, self.topology, self.nodes, self.seed
        )?;
        writeln!(
            f,
            "  time        wall {:.2} s, simulated {:.2} s ({:.0}x real time)",
            self.wall_seconds,
            self.simulated_seconds,
            if self.wall_seconds > 0.0 { self.simulated_seconds / self.wall_seconds } else { 0.0 }
        )?;
        writeln!(
            f,
            "  changes     {} acknowledged, {} converged everywhere",
            self.changes_acknowledged, self.convergence.converged
        )?;
        writeln!(
            f,
            "  convergence p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.convergence.p50_ms, self.convergence.p99_ms, self.convergence.max_ms
        )?;
        writeln!(
            f,
            "  traffic     {} frames, {:.1} MiB; per change {:.1} frames, {:.0} bytes",
            self.frames,
            mib(self.bytes),
            self.frames_per_change,
            self.bytes_per_change
        )?;
        writeln!(
            f,
            "  memory      peak {:.0} MiB ({:.2} MiB per node)",
            mib(self.peak_rss_bytes),
            mib(self.peak_rss_bytes) / self.nodes.max(1) as f64
        )?;
        if self.idle_rss_bytes > 0 {
            writeln!(
                f,
                "  idle        {:.0} MiB for the linked-up federation ({:.2} MiB per node)",
                mib(self.idle_rss_bytes),
                mib(self.idle_rss_bytes) / self.nodes.max(1) as f64
            )?;
        }
        if !self.rejected.is_empty() {
            writeln!(f, "  rejected    {:?}", self.rejected)?;
        }
        if self.services > 0 {
            writeln!(f, "  services    {} versions registered", self.services)?;
        }
        if self.workflow_steps > 0 {
            let states: Vec<String> = self.applications.iter().map(|(s, n)| format!("{n} {s}")).collect();
            writeln!(f, "  workflow    {} steps; applications: {}", self.workflow_steps, states.join(", "))?;
        }
        let d = self.datasets;
        if d.published + d.fetched > 0 {
            writeln!(
                f,
                "  datasets    {} versions published, {} fetched ({} chunks moved, {} from a hub's cache), {} requests refused, {} altered chunks caught, {} cut short",
                d.published, d.fetched, d.chunks_moved, d.from_cache, d.refused, d.caught, d.interrupted
            )?;
        }
        let calls = self.calls;
        if calls.served + calls.refused + calls.unreachable > 0 {
            writeln!(
                f,
                "  calls       {} served, {} refused by their provider, {} unreachable",
                calls.served, calls.refused, calls.unreachable
            )?;
        }
        if self.hand_overs > 0 {
            writeln!(f, "  keys        {} logs handed over to new keys", self.hand_overs)?;
        }
        let p = self.process_kills;
        if p.kills > 0 {
            writeln!(
                f,
                "  processes   {} SIGKILLs of nodes run as processes, {} changes acknowledged at them",
                p.kills, p.acknowledged
            )?;
        }
        if !self.timeline.is_empty() {
            writeln!(f, "  timeline    at s   RSS MiB   acked   travelling   lag ms   p99 ms   calls")?;
            for s in &self.timeline {
                writeln!(
                    f,
                    "              {:>5.0}   {:>7.0}   {:>5}   {:>10}   {:>6}   {:>6}   {:>5}",
                    s.at_s,
                    mib(s.rss_bytes),
                    s.acknowledged,
                    s.travelling,
                    s.oldest_ms,
                    s.p99_ms,
                    s.calls_served
                )?;
            }
        }
        writeln!(f, "  trace       {}", self.trace_digest)?;
        for p in &self.invariants.passed {
            writeln!(f, "  PASS  {p}")?;
        }
        for v in &self.invariants.violations {
            writeln!(f, "  FAIL  {v}")?;
        }
        Ok(())
    }
}

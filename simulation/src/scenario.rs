//! Scenario files: what a simulation does, step by step, and its network.

use cascade_protocol::NodeId;
use serde::Deserialize;
use std::path::Path;

/// A scenario: network conditions and a sequence of steps.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// What it exercises.
    #[serde(default)]
    pub description: String,
    /// Network conditions (deterministic mode; real mode uses the real network).
    #[serde(default)]
    pub network: Network,
    /// The steps, in order.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// Simulated network conditions, per link and direction.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Base one-way latency of a link, ms. Default 10.
    #[serde(default = "default_latency")]
    pub latency_ms: u64,
    /// Uniform extra latency per frame, 0..=jitter ms. Default 5.
    #[serde(default = "default_jitter")]
    pub jitter_ms: u64,
    /// Probability that a frame is lost. QUIC streams never lose data silently, so a
    /// loss breaks the connection: both ends see it drop and reconnect. Default 0.
    #[serde(default)]
    pub loss: f64,
    /// Let jitter reorder frames within a link (beyond what QUIC allows; exercises
    /// gap recovery). Default false: a link is FIFO.
    #[serde(default)]
    pub reorder: bool,
    /// How long a node takes to make a group of writes durable, ms. Default 2.
    #[serde(default = "default_flush")]
    pub flush_ms: u64,
    /// Delay before a broken link is dialed again, ms. Default 200.
    #[serde(default = "default_reconnect")]
    pub reconnect_ms: u64,
}

fn default_latency() -> u64 {
    10
}
fn default_jitter() -> u64 {
    5
}
fn default_flush() -> u64 {
    2
}
fn default_reconnect() -> u64 {
    200
}

impl Default for Network {
    fn default() -> Self {
        Network {
            latency_ms: default_latency(),
            jitter_ms: default_jitter(),
            loss: 0.0,
            reorder: false,
            flush_ms: default_flush(),
            reconnect_ms: default_reconnect(),
        }
    }
}

/// Where publishes happen.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Target {
    /// "random": any node, chosen by the seed.
    Keyword(String),
    /// These nodes, round robin.
    Nodes(Vec<NodeId>),
}

/// The scope of published changes.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScopeMix {
    /// All federation-wide.
    #[default]
    Federation,
    /// All province-scoped (the national node publishes federation-wide).
    Province,
    /// Each change picks one by the seed, 1 in 4 province-scoped.
    Mixed,
}

/// One step of a scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Publish `count` catalog changes at `at`, spread over `over_ms` (simulated).
    /// About a third of the changes update or withdraw an entry published before.
    Publish {
        /// How many changes.
        count: u64,
        /// Where: "random" or a list of node ids.
        #[serde(default = "random")]
        at: Target,
        /// Spread over this many ms. Default: all at once.
        #[serde(default)]
        over_ms: u64,
        /// Scope of the changes.
        #[serde(default)]
        scope: ScopeMix,
    },
    /// Make `count` service calls, spread over `over_ms`, each by a node's
    /// consumers with a service grant they hold. In real mode a few nodes provide
    /// a service each (its upstream an HTTP server of the simulator's) and a few
    /// others hold grants for all of them; every call crosses the real gateways.
    Calls {
        /// How many calls.
        count: u64,
        /// Spread over this many ms. Default: all at once.
        #[serde(default)]
        over_ms: u64,
    },
    /// Cut the link between two neighbours (both directions).
    Partition {
        /// One end.
        a: NodeId,
        /// The other end.
        b: NodeId,
    },
    /// Restore a cut link.
    Heal {
        /// One end.
        a: NodeId,
        /// The other end.
        b: NodeId,
    },
    /// The node signs its audit log's head into its federation log (an audit
    /// checkpoint, acknowledged like a write); at the end of the run its audit
    /// log must still hold what its latest checkpoint witnessed.
    CheckpointAudit {
        /// The node.
        node: NodeId,
    },
    /// Crash a node: it loses everything not yet durable.
    Crash {
        /// The node.
        node: NodeId,
    },
    /// Restart a crashed node from what it had made durable.
    Restart {
        /// The node.
        node: NodeId,
    },
    /// The node's operator gives it a new key: it stops, gets a new certificate of
    /// the same node, and restarts with its previous key to hand its logs over.
    Rekey {
        /// The node.
        node: NodeId,
    },
    /// From now on `relay` alters the bodies of deltas it forwards to `toward`.
    Tamper {
        /// The malicious relay.
        relay: NodeId,
        /// The neighbour it lies to.
        toward: NodeId,
    },
    /// The relay behaves again.
    StopTamper {
        /// The relay.
        relay: NodeId,
        /// The neighbour.
        toward: NodeId,
    },
    /// From now on `relay` alters one byte of every dataset chunk it passes
    /// to `toward` (deltas pass untouched: the versions stay known).
    TamperChunks {
        /// The malicious relay.
        relay: NodeId,
        /// The neighbour it lies to.
        toward: NodeId,
    },
    /// The relay passes chunks on honestly again.
    StopTamperChunks {
        /// The relay.
        relay: NodeId,
        /// The neighbour.
        toward: NodeId,
    },
    /// Delay every frame `node` sends by `ms` more (0 removes the delay).
    Delay {
        /// The node.
        node: NodeId,
        /// Extra delay per frame, ms.
        ms: u64,
    },
    /// Let simulated time pass.
    Wait {
        /// How long, ms.
        ms: u64,
    },
    /// Wait until every node holds everything it should (or `max_ms` passes).
    Converge {
        /// Give up after this long (simulated ms). Default 600000.
        #[serde(default = "default_converge")]
        max_ms: u64,
    },
}

/// One planned change of a publish step.
#[derive(Clone, Copy, Debug)]
pub struct PlannedChange {
    /// Where.
    pub node: NodeId,
    /// In which scope.
    pub scope: cascade_protocol::Scope,
    /// When, ms after the step starts.
    pub offset_ms: u64,
}

/// Plans a publish step: nodes (round robin over a list, or drawn from `ids`),
/// scopes (1 in 4 province-scoped when mixed) and evenly spread times.
pub fn plan_publishes(
    count: u64,
    at: &Target,
    over_ms: u64,
    scope: ScopeMix,
    ids: &[NodeId],
    rng: &mut impl rand::Rng,
) -> Vec<PlannedChange> {
    use cascade_protocol::Scope;
    (0..count)
        .filter_map(|k| {
            let node = match at {
                Target::Nodes(list) if !list.is_empty() => list[(k as usize) % list.len()],
                _ if ids.is_empty() => return None,
                _ => ids[rng.gen_range(0..ids.len())],
            };
            let scope = match scope {
                ScopeMix::Federation => Scope::Federation,
                ScopeMix::Province => Scope::Province,
                ScopeMix::Mixed if rng.gen_ratio(1, 4) => Scope::Province,
                ScopeMix::Mixed => Scope::Federation,
            };
            let offset_ms = if count > 1 { over_ms * k / (count - 1) } else { 0 };
            Some(PlannedChange { node, scope, offset_ms })
        })
        .collect()
}

fn random() -> Target {
    Target::Keyword("random".into())
}

fn default_converge() -> u64 {
    600_000
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        if !(0.0..1.0).contains(&scenario.network.loss) {
            return Err("network.loss must be in [0, 1)".into());
        }
        for step in &scenario.steps {
            if let Step::Publish { at: Target::Keyword(k), .. } = step {
                if k != "random" {
                    return Err(format!("publish.at: {k:?} is neither \"random\" nor a list of ids"));
                }
            }
        }
        Ok(scenario)
    }

    /// Total changes the scenario publishes.
    pub fn changes(&self) -> u64 {
        self.steps.iter().map(|s| if let Step::Publish { count, .. } = s { *count } else { 0 }).sum()
    }
}

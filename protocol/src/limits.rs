//! Every limit of a node in one place, each with the reason for its number, and
//! the relations between them checked at compile time.
//!
//! Wire limits bound what one peer can make a node read, decode and verify; core
//! limits bound one group commit; runtime and admin limits bound queues, budgets
//! and what one caller can ask for.

// ---- Wire ----------------------------------------------------------------------

/// Largest frame a peer may send, in bytes. Checked against the length prefix
/// before a byte of the frame is read; a batch of deltas is cut well below it.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Largest encoded delta body. A catalog entry with 1,000 data items and long texts
/// stays well below; a Join carries at most `MAX_CHAIN_CERTS` certificates of a few KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Encoded size of a delta besides its body: log (origin 4 + scope 4), seq 8,
/// prev 32, the body's length 8, the signature's length 8 and the signature 64.
pub const DELTA_OVERHEAD: usize = 4 + 4 + 8 + 32 + 8 + 8 + 64;

/// Largest encoded delta.
pub const MAX_DELTA_BYTES: usize = DELTA_OVERHEAD + MAX_BODY_BYTES;

/// Longest certificate chain a Join may carry: a city's leaf and its provincial CA
/// (the root is known; national and provincial nodes carry their leaf alone).
pub const MAX_CHAIN_CERTS: usize = 2;

/// Most deltas in one `Frame::Deltas`: keeps one frame's verification work bounded
/// (512 strict verifications are a few tens of milliseconds on one core).
pub const MAX_BATCH_DELTAS: usize = 512;

/// Most delta bytes in one `Frame::Deltas` (a quarter of the frame limit, so a
/// catch-up interleaves with live traffic instead of hogging a link).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Most unsigned deltas an origin lets precede the signed delta that covers them
/// (one group commit signs the last delta of each log it wrote; a longer run is
/// cut by signing early).
pub const MAX_RUN_DELTAS: usize = 255;

/// Most bytes of unsigned deltas before the signed delta that covers them.
pub const MAX_RUN_BYTES: usize = 512 * 1024;

/// Encoded size of a frame besides its payload: variant 4 and a length 8.
pub const FRAME_OVERHEAD: usize = 4 + 8;

/// Most logs a Hello may name: one federation and one province log per node of the
/// largest federation (365 nodes) fits many times over.
pub const MAX_HELLO_LOGS: usize = 16_384;

/// Encoded size of one Hello entry: log 8, seq 8.
pub const HELLO_ENTRY_BYTES: usize = 16;

/// Most gaps remembered per neighbour: bounds what junk deltas naming made-up logs
/// can make a node keep (and ask for).
pub const MAX_ASKED_PER_PEER: usize = 4_096;

/// `Need` requests served per neighbour per second: each may stream a whole log,
/// so a neighbour repeating them cannot make a node resend without end.
pub const NEEDS_PER_SECOND: u32 = 64;

/// Longest revocation reason, in bytes.
pub const MAX_REVOCATION_REASON_BYTES: usize = 1000;

/// Largest encoded routed message (an application, a decision with its grant, a
/// revocation): texts are bounded by the workflow rules to a few KiB, so a
/// message near this size is malformed, not large.
pub const MAX_ROUTED_BYTES: usize = 32 * 1024;

/// How long a routed message may travel: older ones are refused at every hop, so
/// a hop need only remember ids it saw for this long to deliver each once. Ninety
/// days outlasts any outage a node comes back from with its data.
pub const ROUTED_TTL_S: u64 = 90 * 86_400;

/// Most ids one `Frame::RoutedAck` names (a window's worth).
pub const MAX_ACK_IDS: usize = ROUTED_WINDOW;

/// Routed messages sent on a link and not yet acknowledged: enough to keep a
/// link busy across a round trip, few enough that a reconnect resends little.
pub const ROUTED_WINDOW: usize = 256;

/// How long a window of routed messages waits for its acknowledgement before it
/// is sent again on the same link. QUIC loses nothing on a live link; a hop that
/// could not take a message yet (what it depends on is still on its way) does not
/// acknowledge it, and three seconds is what that may add to its delivery.
pub const ROUTED_RESEND_MS: u64 = 3_000;

/// How often a node forgets the routed-message ids whose time to live is over
/// (a scan of the seen-id table: hourly keeps it cheap and the table bounded by
/// what arrived within `ROUTED_TTL_S` and an hour).
pub const SEEN_SWEEP_S: u64 = 3600;

/// How long a routed message may wait at its destination for what it depends on
/// (the consumer's registration, the application a withdrawal names): beyond, it
/// is refused and acknowledged, so that bogus ones cannot hold a window for ever.
pub const ROUTED_WAIT_S: u64 = 600;

/// Most routed messages waiting for one next hop: a neighbour down for long
/// makes new messages for it wait at their origin (refused with 503) instead of
/// growing a relay's store without end.
pub const MAX_ROUTED_PENDING_PER_HOP: usize = 100_000;

/// How far a signed time (a routed message's, a grant's) may be ahead of the
/// receiver's clock.
pub const MAX_CLOCK_SKEW_S: u64 = 300;

// ---- Node core -------------------------------------------------------------------

/// Most commands decided in one group commit: bounds the latency of the first
/// request in a group while letting 256 changes share one flush.
pub const MAX_GROUP_COMMANDS: usize = 256;

/// Most deltas in one group commit: a catch-up arrives as frames of
/// `MAX_BATCH_DELTAS`, and a group of them all would hold back the
/// acknowledgements of local changes.
pub const MAX_GROUP_DELTAS: usize = 4096;

/// How long like events (same actor, kind and reason) are counted into one audit
/// summary after the record of the first: a flood costs two records a minute.
pub const AUDIT_TALLY_MS: u64 = 60_000;

/// Most streams of like events counted at once; beyond, events are counted
/// together under one actor, so a flood from many addresses stays bounded too.
pub const MAX_TALLIES: usize = 1024;

/// Deltas a neighbour may relay that fail checks an honest relay makes too, within
/// `REJECTIONS_WINDOW_MS`, before its link is closed: a few stem from honest races;
/// a stream of them is junk.
pub const MAX_REJECTIONS_PER_LINK: u32 = 64;

/// Login sessions one account keeps: a person signs in from a few browsers and
/// devices (machines use API tokens). Opening one more ends the oldest, so a
/// scripted login loop cannot grow the store: sessions are at most this many
/// times `MAX_ACCOUNTS`.
pub const MAX_SESSIONS_PER_ACCOUNT: usize = 16;

/// The window `MAX_REJECTIONS_PER_LINK` counts in: a link up for months is not
/// dropped for the odd race a week, while a junk stream fills it in moments.
pub const REJECTIONS_WINDOW_MS: u64 = 10 * 60_000;

/// How long a neighbour dropped for junk is refused at first; each further drop
/// doubles it, up to `MAX_QUARANTINE_MS`.
pub const QUARANTINE_MS: u64 = 30_000;

/// The longest a neighbour is refused for junk at a time.
pub const MAX_QUARANTINE_MS: u64 = 30 * 60_000;

/// A second link of a node whose link came up less than this ago is refused; an
/// older one is replaced (the node crashed and is back). Matches the QUIC idle
/// time-out: a link silent that long is gone anyway.
pub const LINK_REPLACE_MS: u64 = 10_000;

/// First pause before redialing a parent that could not be reached; doubles up to
/// `REDIAL_MAX_MS`, and starts over once the parent has spoken.
pub const REDIAL_MIN_MS: u64 = 100;

/// Longest pause between two dials of a parent that could not be reached.
pub const REDIAL_MAX_MS: u64 = 2_000;

/// First pause after a parent refused this node (revoked, blocked, not its parent,
/// quarantined): a refusal does not go away by itself, so retries are minutes apart.
pub const REDIAL_REFUSED_MS: u64 = 30_000;

/// Longest pause after refusals: a revoked child dials about six times an hour.
pub const REDIAL_REFUSED_MAX_MS: u64 = 10 * 60_000;

/// First pause after a parent turned a connection away before any cryptography
/// (busy, or this address failed handshakes): such a refusal may lift soon.
pub const REDIAL_TURNED_AWAY_MS: u64 = 1_000;

/// Longest pause after being turned away: a throttle lasts at most a minute.
pub const REDIAL_TURNED_AWAY_MAX_MS: u64 = 60_000;

/// Own catalog entries the core keeps in memory once read or changed: most
/// changes touch an entry changed recently, and 4096 entries of about 1 KiB each
/// bound the cache to a few MiB.
pub const OWN_ENTRY_CACHE: usize = 4096;

/// Longest audit actor, organization or kind kept, in bytes: longer values are cut
/// (at a char boundary) so that an oversized label never makes an append fail.
pub const MAX_AUDIT_LABEL_BYTES: usize = 256;

/// Longest audit detail kept, in bytes; longer details are cut like labels.
pub const MAX_AUDIT_DETAIL_BYTES: usize = 4096;

/// Most accounts on one node: each login costs an Argon2 hash; the bound keeps
/// listing and storage small.
pub const MAX_ACCOUNTS: usize = 10_000;

/// Longest API token label, in bytes.
pub const MAX_TOKEN_LABEL_BYTES: usize = 200;

/// Deepest organization hierarchy followed when checking a cataloger's scope (also
/// stops a cycle of parents).
pub const MAX_ORG_DEPTH: usize = 16;

/// Most sequence numbers tried for a fresh resource code; only operator-chosen
/// codes can be in the way, so a handful of tries is already plenty.
pub const MAX_CODE_TRIES: usize = 1000;

// ---- Runtime ---------------------------------------------------------------------

/// Capacity of a node's inbox (commands and link events). Link readers wait when it
/// is full, which pushes back on peers through QUIC flow control.
pub const INBOX_CAPACITY: usize = 1024;

/// Frames queued per neighbour. A catch-up is one range item, so this bounds live
/// frames only; a neighbour this far behind is dropped and resyncs on reconnect.
pub const OUTBOX_CAPACITY: usize = 8192;

/// Bytes of received frames a node holds at once (64 MiB): readers wait for budget
/// before queueing a frame, so hostile peers cannot grow memory with large frames
/// faster than the core handles them.
pub const INBOX_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// Incoming connections in TLS handshake or admission at once: bounds the work a
/// flood of connection attempts can cause before any identity is known.
pub const MAX_CONCURRENT_ADMISSIONS: usize = 64;

/// Capacity of the applied-delta notification channel; a subscriber that lags
/// further misses notifications (and is told so).
pub const APPLIED_CAPACITY: usize = 4096;

// ---- Admin HTTP ------------------------------------------------------------------

/// Largest request body accepted: a catalog entry with 1,000 data items is far below.
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;

/// Most records one listing returns.
pub const MAX_LIST: usize = 1000;

/// Most audit records one query reads (about 10 ms of decoding): a query whose
/// filter no index narrows answers what it found in them, with a cursor to go on.
pub const MAX_AUDIT_EXAMINED: usize = 10_000;

/// Most catalog entries one listing looks at in the in-memory index (about 20 ms
/// of substring search): beyond, it answers what it found with a cursor.
pub const MAX_CATALOG_EXAMINED: usize = 200_000;

/// Most stored rows one listing of organizations, accounts or tokens reads.
pub const MAX_DIRECTORY_EXAMINED: usize = 10_000;

/// Password checks running at once: each takes ~19 MiB and tens of ms of Argon2id.
pub const MAX_CONCURRENT_LOGINS: usize = 4;

/// Audit queries reading at once, per node: each may decode `MAX_AUDIT_EXAMINED`
/// records; two keep a core busy without starving the node's other work.
pub const MAX_CONCURRENT_AUDIT_READS: usize = 2;

/// Catalog listings and searches running at once, per node.
pub const MAX_CONCURRENT_CATALOG_READS: usize = 4;

/// Other listings (organizations, accounts, tokens, sessions) at once, per node.
pub const MAX_CONCURRENT_DIRECTORY_READS: usize = 4;

/// Open-data reads (public, unauthenticated) at once, per node: one core's
/// worth, so a harvester or a crowd never starves the staff's own reads.
pub const MAX_CONCURRENT_OPEN_READS: usize = 2;

/// How long a read waits for its turn before the node answers that it is busy
/// (503 with Retry-After): a queue, but a short one.
pub const READ_WAIT_MS: u64 = 2_000;

// ---- Relations -------------------------------------------------------------------

// One maximal delta always fits a batch, so a batch never exceeds MAX_BATCH_BYTES.
const _: () = assert!(MAX_DELTA_BYTES <= MAX_BATCH_BYTES);
// A run with the signed delta that closes it always fits one batch (it must
// travel in one frame to be verified).
const _: () = assert!(MAX_RUN_DELTAS < MAX_BATCH_DELTAS);
const _: () = assert!(MAX_RUN_BYTES + MAX_DELTA_BYTES <= MAX_BATCH_BYTES);
// A full batch, and a full Hello, fit in one frame.
const _: () = assert!(FRAME_OVERHEAD + MAX_BATCH_BYTES <= MAX_FRAME_BYTES);
const _: () = assert!(FRAME_OVERHEAD + MAX_HELLO_LOGS * HELLO_ENTRY_BYTES <= MAX_FRAME_BYTES);
// One frame's deltas always fit in one group.
const _: () = assert!(MAX_BATCH_DELTAS <= MAX_GROUP_DELTAS);
// A maximal frame can always get its share of the inbox budget (else a reader
// would wait forever).
const _: () = assert!(MAX_FRAME_BYTES <= INBOX_BUDGET_BYTES);
// A request body can hold a maximal delta body's worth of JSON input.
const _: () = assert!(MAX_BODY_BYTES <= MAX_REQUEST_BODY_BYTES);
// Audit details hold at least a revocation reason.
const _: () = assert!(MAX_REVOCATION_REASON_BYTES < MAX_AUDIT_DETAIL_BYTES);

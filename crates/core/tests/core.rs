//! The node core on its own, driven by hand over a MemoryStore: group commit holds
//! every send and reply until the group is durable; every change is authorized
//! and audited in the commit that applies it; peer faults are classified.

use cascade_access::{Principal, Role};
use cascade_certs::{node_identity, Authority, FederationVerifier, KeySource};
use cascade_core::audit::{self, AuditRecord};
use cascade_core::{
    Command, CommandError, Core, Effect, Identity, Input, LinkRole, Materialize, MemoryStore, OwnWrite,
    Reply, WriteBatch,
};
use cascade_protocol::catalog::EntryDraft;
use cascade_protocol::limits::{
    AUDIT_TALLY_MS, LINK_REPLACE_MS, MAX_REJECTIONS_PER_LINK, QUARANTINE_MS, REJECTIONS_WINDOW_MS,
};
use cascade_protocol::org::Organization;
use cascade_protocol::{Delta, Frame, Incompatibility, LogId, Misbehaviour, NodeId, PeerError, Scope, Tier};
use ed25519_dalek::SigningKey;
use std::sync::Arc;

const NOW_MS: u64 = 1_800_000_000_000;

fn nid(s: &str) -> NodeId {
    s.parse().unwrap()
}

/// A core for Shandong's hub with certificates from fixed keys.
fn core() -> Core<MemoryStore> {
    let given = |seed: u8| KeySource::Given {
        key: Box::new(SigningKey::from_bytes(&[seed; 32])),
        not_before: NOW_MS / 1000 - 86_400,
    };
    let root = Authority::new_root_from("test root", &given(1)).unwrap();
    let identity = node_identity(nid("370000"), Tier::Provincial, Some(nid("100000")), "山东省").unwrap();
    let creds = root.issue_from(&identity, &given(2)).unwrap();
    let identity = Identity {
        key: creds.signing_key().unwrap(),
        chain: creds.chain,
        verifier: Box::new(FederationVerifier::new(root.cert_der()).unwrap()),
        previous_key: None,
    };
    Core::boot(identity, MemoryStore::new(), NOW_MS).unwrap()
}

/// Drains the effects; applies and completes every commit; returns the rest and
/// the batches committed.
fn settle(core: &mut Core<MemoryStore>) -> (Vec<Effect>, Vec<WriteBatch>) {
    let mut effects = Vec::new();
    let mut batches = Vec::new();
    while let Some(effect) = core.poll() {
        match effect {
            Effect::Commit { group, batch } => {
                core.store_mut().apply(group, (*batch).clone()).unwrap();
                core.store_mut().made_durable(group).unwrap();
                batches.push(*batch);
                core.handle(NOW_MS, Input::Committed { group });
            }
            other => effects.push(other),
        }
    }
    (effects, batches)
}

fn command(core: &mut Core<MemoryStore>, ticket: u64, by: Principal, command: Command) {
    core.handle(NOW_MS, Input::Command { ticket, by, command });
}

fn reply(effects: &[Effect], ticket: u64) -> &Result<Reply, CommandError> {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Reply { ticket: t, result } if *t == ticket => Some(result),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no reply to {ticket} in {effects:?}"))
}

fn audited(batch: &WriteBatch) -> Vec<AuditRecord> {
    batch.audit.iter().map(|r| audit::decode(r.seq, &r.value).unwrap().record).collect()
}

fn org(code_serial: u32, parent: Option<String>) -> Organization {
    Organization {
        credit_code: Organization::government_code(nid("370000"), code_serial),
        name: format!("单位{code_serial}"),
        division: nid("370000"),
        parent,
    }
}

fn draft(provider: &str) -> EntryDraft {
    let mut d: EntryDraft = serde_json::from_str(
        r#"{"name": "企业登记基本信息", "classification": "3", "provider": "x",
        "summary": "Basic", "format": "database",
        "data_items": [{"name": "统一社会信用代码", "data_type": "C", "length": 18}],
        "share_type": "unconditional", "share_mode": "platform", "open_type": "closed",
        "update_cycle": "daily"}"#,
    )
    .unwrap();
    d.provider = provider.into();
    d
}

fn cataloger_of(org: &str) -> Principal {
    Principal {
        actor: "account:li".into(),
        username: Some("li".into()),
        organization: Some(org.into()),
        roles: vec![Role::Cataloger],
    }
}

#[test]
fn nothing_is_sent_or_answered_before_its_group_is_durable_and_the_next_group_collects_meanwhile() {
    let mut core = core();
    settle(&mut core);
    core.handle(NOW_MS, Input::LinkUp { link: 7, peer: nid("370100"), role: LinkRole::Child });
    command(&mut core, 1, Principal::node(), Command::RegisterOrganization(org(1, None)));
    // The group goes out as one commit; its Hello and reply wait for it.
    let Some(Effect::Commit { group, batch }) = core.poll() else { panic!("a commit first") };
    assert!(core.poll().is_none(), "nothing else before the commit is durable");
    assert!(batch.deltas.iter().any(|d| d.seq == 2), "the registration delta is in the batch");
    // Meanwhile the next group collects: a second command, no effect yet.
    command(&mut core, 2, Principal::node(), Command::RegisterOrganization(org(2, None)));
    assert!(core.poll().is_none());
    core.store_mut().apply(group, *batch).unwrap();
    core.handle(NOW_MS, Input::Committed { group });
    let mut released = Vec::new();
    while let Some(effect) = core.poll() {
        let is_commit = matches!(effect, Effect::Commit { .. });
        released.push(effect);
        if is_commit {
            break;
        }
    }
    assert!(released.iter().any(|e| matches!(e, Effect::Send { frame: Frame::Hello { .. }, link: 7, .. })));
    assert!(matches!(reply(&released, 1), Ok(Reply::Organization(_))));
    assert!(matches!(released.last(), Some(Effect::Commit { .. })), "then the second group: {released:?}");
    assert!(!released.iter().any(|e| matches!(e, Effect::Reply { ticket: 2, .. })));
}

#[test]
fn an_organization_registration_and_its_audit_record_share_one_commit() {
    let mut core = core();
    settle(&mut core);
    command(&mut core, 1, Principal::bootstrap(), Command::RegisterOrganization(org(1, None)));
    let (effects, batches) = settle(&mut core);
    assert!(matches!(reply(&effects, 1), Ok(Reply::Organization(_))));
    let [batch] = batches.as_slice() else { panic!("one commit: {batches:?}") };
    assert!(batch
        .materialize
        .iter()
        .any(|m| matches!(m, Materialize::Organization { code, .. } if *code == org(1, None).credit_code)));
    let records = audited(batch);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].kind.as_str(), records[0].actor.as_str()),
        ("organization.register", "token:bootstrap")
    );
}

#[test]
fn a_cataloger_outside_its_organization_is_refused_and_the_refusal_audited() {
    let mut core = core();
    settle(&mut core);
    let ours = org(1, None);
    let sub = org(2, Some(ours.credit_code.clone()));
    let theirs = org(3, None);
    for (t, o) in [(1, &ours), (2, &sub), (3, &theirs)] {
        command(&mut core, t, Principal::node(), Command::RegisterOrganization(o.clone()));
    }
    settle(&mut core);
    let li = cataloger_of(&ours.credit_code);
    command(&mut core, 10, li.clone(), Command::SaveEntry(Box::new(draft(&sub.credit_code))));
    command(&mut core, 11, li.clone(), Command::SaveEntry(Box::new(draft(&theirs.credit_code))));
    let (effects, batches) = settle(&mut core);
    assert!(matches!(reply(&effects, 10), Ok(Reply::Entry(_))), "a sub-organization's entry is in scope");
    let Err(CommandError::Forbidden(reason)) = reply(&effects, 11) else {
        panic!("{:?}", reply(&effects, 11))
    };
    assert!(reason.contains(&theirs.credit_code), "{reason}");
    let records: Vec<AuditRecord> = batches.iter().flat_map(audited).collect();
    let kinds: Vec<(&str, &str)> = records.iter().map(|r| (r.kind.as_str(), r.actor.as_str())).collect();
    assert_eq!(kinds, vec![("catalog.save", "account:li"), ("access.denied", "account:li")]);
}

#[test]
fn publishing_signs_once_sets_the_publish_date_and_versions_only_go_up() {
    let mut core = core();
    settle(&mut core);
    let ours = org(1, None);
    command(&mut core, 1, Principal::node(), Command::RegisterOrganization(ours.clone()));
    command(&mut core, 2, Principal::node(), Command::SaveEntry(Box::new(draft(&ours.credit_code))));
    command(&mut core, 3, Principal::node(), Command::PublishEntry { code: "3/000001".into(), scope: None });
    command(&mut core, 4, Principal::node(), Command::PublishEntry { code: "3/000001".into(), scope: None });
    command(&mut core, 5, Principal::node(), Command::WithdrawEntry { code: "3/999999".into() });
    let (effects, batches) = settle(&mut core);
    let Ok(Reply::Entry(saved)) = reply(&effects, 3) else { panic!("{:?}", reply(&effects, 3)) };
    assert_eq!((saved.entry.version, saved.entry.publish_date.as_deref()), (1, Some("2027-01-15")));
    assert!(matches!(reply(&effects, 4), Err(CommandError::Conflict(_))), "already published");
    assert!(matches!(reply(&effects, 5), Err(CommandError::NotFound(_))));
    let own = batches.iter().flat_map(|b| &b.own).last().unwrap();
    assert!(
        matches!(own.1, OwnWrite::Signed { replaces_draft: true, .. }),
        "the signed state replaces the draft as the working copy: {own:?}"
    );
    // An update of the published entry is a new version, keeping its publish date.
    let mut update = draft(&ours.credit_code);
    update.code = Some("3/000001".into());
    update.summary = "updated".into();
    command(&mut core, 6, Principal::node(), Command::SaveEntry(Box::new(update)));
    let (effects, _) = settle(&mut core);
    let Ok(Reply::Entry(saved)) = reply(&effects, 6) else { panic!() };
    assert_eq!((saved.entry.version, saved.entry.publish_date.as_deref()), (2, Some("2027-01-15")));
}

#[test]
fn peer_faults_are_classified_closed_and_audited() {
    let mut core = core();
    settle(&mut core);
    core.handle(NOW_MS, Input::LinkUp { link: 1, peer: nid("370100"), role: LinkRole::Child });
    core.handle(NOW_MS, Input::Frame { link: 1, frame: Frame::Hello { vv: vec![] } });
    core.handle(NOW_MS, Input::Frame { link: 1, frame: Frame::Hello { vv: vec![] } });
    let (effects, batches) = settle(&mut core);
    let closed = effects.iter().find_map(|e| match e {
        Effect::Close { link: 1, reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(closed, Some(PeerError::Misbehaved(Misbehaviour::SecondHello)));
    core.handle(NOW_MS, Input::LinkUp { link: 2, peer: nid("370200"), role: LinkRole::Child });
    let garbage = Misbehaviour::MalformedFrame("junk".into());
    core.handle(NOW_MS, Input::LinkDown { link: 2, cause: Some(garbage.into()) });
    let (_, more) = settle(&mut core);
    let kinds: Vec<String> = batches.iter().chain(&more).flat_map(audited).map(|r| r.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "peer.misbehaved").count(), 2, "{kinds:?}");
    // A second link of a node whose link just came up is refused; once the first
    // is older than a link can stay silent, a reconnect replaces it (nobody's fault).
    core.handle(NOW_MS, Input::LinkUp { link: 3, peer: nid("370300"), role: LinkRole::Child });
    core.handle(NOW_MS, Input::LinkUp { link: 4, peer: nid("370300"), role: LinkRole::Child });
    let (effects, _) = settle(&mut core);
    let refused = effects.iter().find_map(|e| match e {
        Effect::Close { link: 4, reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(refused, Some(Incompatibility::AlreadyLinked(nid("370300")).into()));
    let later = NOW_MS + LINK_REPLACE_MS;
    core.handle(later, Input::LinkUp { link: 5, peer: nid("370300"), role: LinkRole::Child });
    let (effects, _) = settle(&mut core);
    assert!(effects.iter().any(|e| matches!(e, Effect::Close { link: 3, .. })), "{effects:?}");
    let status = core.status();
    assert_eq!((status.peer_faults.misbehaved, status.peer_faults.incompatible), (2, 1));
    assert_eq!(status.peers.keys().copied().collect::<Vec<_>>(), vec![nid("370300")]);
}

/// A delta no honest relay would pass on: not even a body.
fn junk(seq: u64) -> Arc<Delta> {
    let log = LogId { origin: nid("370100"), scope: Scope::Province };
    Arc::new(Delta { log, seq, prev: [0; 32], body: vec![0xff; 3], signature: vec![7; 64] })
}

#[test]
fn the_odd_rejection_spread_over_a_long_link_life_does_not_drop_it() {
    let mut core = core();
    settle(&mut core);
    core.handle(NOW_MS, Input::LinkUp { link: 1, peer: nid("370100"), role: LinkRole::Child });
    // Just under the limit in each window, window after window.
    for window in 0..3 {
        let at = NOW_MS + window * REJECTIONS_WINDOW_MS;
        for _ in 1..MAX_REJECTIONS_PER_LINK {
            core.handle(at, Input::Frame { link: 1, frame: Frame::Deltas(vec![junk(0)]) });
        }
        let (effects, _) = settle(&mut core);
        assert!(!effects.iter().any(|e| matches!(e, Effect::Close { link: 1, .. })), "window {window}");
    }
    assert!(core.status().peers.contains_key(&nid("370100")));
}

#[test]
fn a_neighbour_relaying_junk_is_dropped_refused_for_a_while_and_audited_by_tally() {
    let mut core = core();
    settle(&mut core);
    let child = nid("370100");
    core.handle(NOW_MS, Input::LinkUp { link: 1, peer: child, role: LinkRole::Child });
    for _ in 0..MAX_REJECTIONS_PER_LINK {
        core.handle(NOW_MS, Input::Frame { link: 1, frame: Frame::Deltas(vec![junk(0)]) });
    }
    let (effects, batches) = settle(&mut core);
    let closed = effects.iter().find_map(|e| match e {
        Effect::Close { link: 1, reason, .. } => Some(reason.clone()),
        _ => None,
    });
    let count = MAX_REJECTIONS_PER_LINK;
    assert_eq!(closed, Some(Misbehaviour::InvalidDeltas { count }.into()));
    let status = core.status();
    assert_eq!(
        status.rejected.iter().map(|(_, n)| n).sum::<u64>(),
        u64::from(MAX_REJECTIONS_PER_LINK),
        "every rejection is counted"
    );
    assert_eq!(status.quarantined.get(&child), Some(&(NOW_MS + QUARANTINE_MS)));
    let records: Vec<AuditRecord> = batches.iter().flat_map(audited).collect();
    let rejected = records.iter().filter(|r| r.kind == "delta.rejected").count();
    assert_eq!(rejected, 1, "one record opens the tally, not one per delta: {records:?}");
    // While quarantined, a new link of it is refused at once.
    core.handle(NOW_MS + 1000, Input::LinkUp { link: 2, peer: child, role: LinkRole::Child });
    let (effects, _) = settle(&mut core);
    let until_ms = NOW_MS + QUARANTINE_MS;
    let refused = Incompatibility::Quarantined { node: child, until_ms }.into();
    assert!(effects.iter().any(|e| matches!(e, Effect::Close { link: 2, reason, .. } if *reason == refused)));
    // The window closes with one summary of what it counted.
    let deadline = core.poll_timeout().expect("a tally is open");
    assert_eq!(deadline, NOW_MS + AUDIT_TALLY_MS);
    core.handle(deadline, Input::Tick);
    let (_, batches) = settle(&mut core);
    let summary: Vec<AuditRecord> =
        batches.iter().flat_map(audited).filter(|r| r.kind == "delta.rejected").collect();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert!(summary[0].detail.starts_with(&format!("{} more (broken_chain)", count - 1)), "{summary:?}");
    // After the quarantine it may link again.
    core.handle(until_ms, Input::LinkUp { link: 3, peer: child, role: LinkRole::Child });
    let (effects, _) = settle(&mut core);
    assert!(!effects.iter().any(|e| matches!(e, Effect::Close { link: 3, .. })), "{effects:?}");
    assert!(core.status().peers.contains_key(&child));
}

#[test]
fn an_account_keeps_a_bounded_number_of_sessions_and_ended_ones_leave_nothing_stored() {
    use cascade_core::StateStore;
    use cascade_protocol::limits::MAX_SESSIONS_PER_ACCOUNT;
    let mut core = core();
    settle(&mut core);
    command(&mut core, 1, Principal::node(), Command::RegisterOrganization(org(1, None)));
    let account = Command::CreateAccount {
        username: "li".into(),
        organization: org(1, None).credit_code,
        roles: vec![Role::Cataloger],
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
    };
    command(&mut core, 2, Principal::node(), account);
    settle(&mut core);
    let open = |core: &mut Core<MemoryStore>, i: usize| {
        let id = format!("s{i:03}");
        let session = Command::OpenSession { username: "li".into(), id: id.clone(), secret_hash: "h".into() };
        command(core, 100 + i as u64, Principal::node(), session);
        id
    };
    // A login loop: the store keeps the newest sessions only.
    let ids: Vec<String> = (0..MAX_SESSIONS_PER_ACCOUNT * 3).map(|i| open(&mut core, i)).collect();
    settle(&mut core);
    let kept: Vec<&String> = ids.iter().filter(|id| core.store().token(id).unwrap().is_some()).collect();
    assert_eq!(kept, ids.iter().skip(MAX_SESSIONS_PER_ACCOUNT * 2).collect::<Vec<_>>());
    // Logging out deletes the session.
    let last = ids.last().unwrap().clone();
    let by = Principal { username: Some("li".into()), ..cataloger_of("x") };
    command(&mut core, 999, by, Command::RevokeToken { id: last.clone() });
    let (effects, _) = settle(&mut core);
    assert!(reply(&effects, 999).is_ok(), "{effects:?}");
    assert_eq!(core.store().token(&last).unwrap(), None);
}

#[test]
fn routed_message_ids_are_swept_hourly_once_their_time_to_live_is_over() {
    use cascade_protocol::limits::SEEN_SWEEP_S;
    let mut core = core();
    settle(&mut core);
    let due = NOW_MS + SEEN_SWEEP_S * 1000;
    assert!(core.poll_timeout().is_some_and(|t| t <= due), "a sweep is always ahead");
    core.handle(due - 1, Input::Tick);
    let (_, early) = settle(&mut core);
    assert!(early.iter().all(|b| b.sweep_seen.is_none()), "not before the hour");
    core.handle(due, Input::Tick);
    let (_, batches) = settle(&mut core);
    let swept: Vec<u64> = batches.iter().filter_map(|b| b.sweep_seen).collect();
    assert_eq!(swept, [due / 1000], "ids whose time to live ended before now are forgotten");
    // And again an hour later (an audit checkpoint may be due before).
    assert!(core.poll_timeout().is_some_and(|t| t > due && t <= due + SEEN_SWEEP_S * 1000));
}

#[test]
fn a_growing_audit_log_is_checkpointed_on_time_and_an_idle_one_is_not() {
    let checkpoints = |batches: &[cascade_core::WriteBatch]| {
        let body = |d: &std::sync::Arc<cascade_protocol::Delta>| d.decode_body().ok();
        let all = batches.iter().flat_map(|b| &b.deltas);
        all.filter(|d| matches!(body(d), Some(cascade_protocol::DeltaBody::AuditCheckpoint(_)))).count()
    };
    let mut core = core();
    settle(&mut core);
    let first = core.poll_timeout().expect("a checkpoint is ahead");
    assert!(first > NOW_MS);
    core.handle(first - 1, Input::Tick);
    assert_eq!(checkpoints(&settle(&mut core).1), 0, "not before it is due");
    core.handle(first, Input::Tick);
    assert_eq!(checkpoints(&settle(&mut core).1), 1, "the log grew since boot");
    assert_eq!(core.status().audit_checkpoint.map(|c| c.records > 0), Some(true));
    // Nothing new since but the checkpoint's own record: the next period makes none.
    let next = core.poll_timeout().expect("the next period");
    assert!(next > first);
    core.handle(next, Input::Tick);
    assert_eq!(checkpoints(&settle(&mut core).1), 0, "an idle log is not checkpointed again");
}

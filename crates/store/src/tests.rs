use super::*;
use cascade_core::audit::{AuditEvent, Chain};
use cascade_core::OwnWrite;
use cascade_protocol::catalog::{EntryDraft, EntryStatus};
use cascade_protocol::{Delta, DeltaBody, NodeId, GENESIS_HASH};
use ed25519_dalek::SigningKey;
use std::sync::Arc;

fn jinan() -> NodeId {
    "370100".parse().unwrap()
}

fn entry(version: u64) -> CatalogEntry {
    let draft = EntryDraft {
        code: None,
        name: format!("v{version}"),
        classification: "3".into(),
        provider: "91350100M000100Y43".into(),
        summary: "s".into(),
        format: cascade_protocol::catalog::ResourceFormat::ElectronicFile,
        data_items: vec![],
        share_type: cascade_protocol::catalog::ShareType::Unconditional,
        share_condition: None,
        not_shared_basis: None,
        share_mode: cascade_protocol::catalog::ShareMode::Platform,
        open_type: cascade_protocol::catalog::OpenType::Closed,
        open_condition: None,
        update_cycle: cascade_protocol::catalog::UpdateCycle::Daily,
        publish_date: None,
        related_codes: vec![],
    };
    CatalogEntry::from_draft(draft, "3/000001".into(), version, EntryStatus::Published)
}

fn log() -> LogId {
    LogId { origin: jinan(), scope: Scope::Federation }
}

/// A chain of catalog deltas publishing versions 1..=n of one entry.
fn chain(n: u64) -> Vec<Arc<Delta>> {
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut prev = GENESIS_HASH;
    (1..=n)
        .map(|seq| {
            let d = Delta::sign(&key, log(), seq, prev, &DeltaBody::Catalog(entry(seq))).unwrap();
            prev = d.hash();
            Arc::new(d)
        })
        .collect()
}

/// The batch a core would write for these admitted deltas.
fn batch(deltas: &[Arc<Delta>]) -> WriteBatch {
    let materialize = deltas
        .iter()
        .map(|d| Materialize::Catalog { log: d.log, code: "3/000001".into(), delta: d.clone() })
        .collect();
    WriteBatch { deltas: deltas.to_vec(), materialize, ..WriteBatch::default() }
}

#[test]
fn logs_survive_reopen_and_a_batch_with_a_hole_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let deltas = chain(5);
    {
        let store = Store::open(dir.path(), jinan()).unwrap();
        store.apply(&batch(&deltas[..3])).unwrap();
        let err = store.apply(&batch(&deltas[4..])).unwrap_err();
        assert!(matches!(err, StoreError::OutOfOrder { expected: 4, got: 5, .. }), "{err}");
        store.flush().unwrap();
    }
    let store = Store::open(dir.path(), jinan()).unwrap();
    assert_eq!(store.head(log()).unwrap(), 3);
    let back: Vec<Delta> = store.range(log(), 2, 3).map(Result::unwrap).collect();
    assert_eq!(back, deltas[1..3].iter().map(|d| Delta::clone(d)).collect::<Vec<_>>());
    let rows = store.catalog_entry(jinan(), "3/000001").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].entry.version, 3, "the last delta in log order is materialized");
    assert_eq!(store.deltas().count(), 3);
}

#[test]
fn an_own_entry_is_its_draft_until_published_then_its_latest_delta() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    let mut draft = entry(0);
    draft.status = EntryStatus::Draft;
    let own = |w: OwnWrite| vec![("3/000001".to_string(), w)];
    let first = WriteBatch {
        own: own(OwnWrite::Draft { scope: Scope::Federation, entry: draft.clone() }),
        ..WriteBatch::default()
    };
    store.apply(&first).unwrap();
    assert_eq!(store.own_entry("3/000001").unwrap(), Some((Scope::Federation, draft)));
    assert_eq!(store.own_entries().count(), 1);
    // Published: the draft gives way to the delta, stored once.
    let deltas = chain(2);
    let published = OwnWrite::Signed { scope: Scope::Federation, entry: entry(1), replaces_draft: true };
    store.apply(&WriteBatch { own: own(published), ..batch(&deltas[..1]) }).unwrap();
    assert_eq!(store.own_entry("3/000001").unwrap(), Some((Scope::Federation, entry(1))));
    assert_eq!(store.own_entries().count(), 0);
    store.apply(&batch(&deltas[1..])).unwrap();
    assert_eq!(store.own_entry("3/000001").unwrap(), Some((Scope::Federation, entry(2))));
    // Another node's entry with the same code is not this node's own.
    let other = tempfile::tempdir().unwrap();
    let elsewhere = Store::open(other.path(), "370200".parse().unwrap()).unwrap();
    elsewhere.apply(&batch(&deltas)).unwrap();
    assert_eq!(elsewhere.own_entry("3/000001").unwrap(), None);
}

#[test]
fn a_damaged_record_is_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    store.apply(&batch(&chain(1))).unwrap();
    store.db.insert(keys::log_key(log(), 1), &b"garbage"[..]).unwrap();
    let err = store.all_deltas().next().unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_store_of_the_earlier_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert(b"L\x00\x05\xa5\x64\x00", &b"old"[..]).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path(), jinan()).err().expect("refused");
    assert!(matches!(err, StoreError::Format { found: 1, expected: FORMAT, .. }), "{err}");
    assert!(err.to_string().contains("move this data folder aside"), "{err}");
}

fn event(actor: &str, org: Option<&str>, kind: &str) -> AuditEvent {
    AuditEvent { actor: actor.into(), org: org.map(Into::into), kind: kind.into(), detail: String::new() }
}

#[test]
fn audit_queries_filter_and_page_and_verification_finds_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    let mut chain = Chain::after(store.boot().unwrap().audit_head);
    let events = [
        (1000, event("account:alice", None, "login.success")),
        (1000, event("account:bob", None, "login.failure")),
        (1000, event("account:alice", Some("org-a"), "catalog.publish")),
        (2000, event("peer:370100", Some("org-a"), "delta.rejected")),
        (2000, event("peer:370200", Some("org-b"), "peer.refused")),
    ];
    let audit = events.into_iter().map(|(at, e)| chain.seal(at, e)).collect();
    store.apply(&WriteBatch { audit, ..WriteBatch::default() }).unwrap();
    assert_eq!(store.boot().unwrap().audit_head.map(|h| h.0), Some(5));

    let query = |f: AuditFilter| store.audit_query(&f).unwrap().iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(query(AuditFilter::default()), vec![1, 2, 3, 4, 5]);
    assert_eq!(query(AuditFilter { actor: Some("account:alice".into()), ..Default::default() }), vec![1, 3]);
    assert_eq!(query(AuditFilter { org: Some("org-a".into()), ..Default::default() }), vec![3, 4]);
    assert_eq!(query(AuditFilter { kind: Some("login.".into()), ..Default::default() }), vec![1, 2]);
    assert_eq!(query(AuditFilter { since_ms: Some(1500), ..Default::default() }), vec![4, 5]);
    assert_eq!(query(AuditFilter { limit: 2, ..Default::default() }), vec![4, 5], "newest by default");
    assert_eq!(query(AuditFilter { after_seq: Some(1), limit: 2, ..Default::default() }), vec![2, 3]);
    assert_eq!(query(AuditFilter { after_seq: Some(u64::MAX), ..Default::default() }), Vec::<u64>::new());
    assert!(store.audit_verify().unwrap().ok);

    let key = audit_key(3);
    let mut value = store.db.get(key).unwrap().unwrap().to_vec();
    let middle = value.len() / 2;
    value[middle] ^= 1;
    store.db.insert(key, value).unwrap();
    let verdict = store.audit_verify().unwrap();
    assert_eq!((verdict.ok, verdict.first_break, verdict.records), (false, Some(3), 5), "{verdict:?}");
}

#[test]
fn accounts_and_tokens_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), jinan()).unwrap();
    let account = AccountRecord {
        username: "li".into(),
        organization: "11370100MB00000016".into(),
        roles: vec![cascade_access::Role::Cataloger],
        password_hash: "$argon2id$...".into(),
        created_at: 5,
    };
    let token = TokenRecord {
        id: "0123456789abcdef".into(),
        kind: cascade_access::TokenKind::Api,
        username: "li".into(),
        label: "ci".into(),
        secret_hash: "h".into(),
        created_at: 5,
        expires_at: None,
        revoked: false,
    };
    let batch =
        WriteBatch { accounts: vec![account.clone()], tokens: vec![token.clone()], ..WriteBatch::default() };
    store.apply(&batch).unwrap();
    assert_eq!(store.account("li").unwrap(), Some(account.clone()));
    assert_eq!(store.token(&token.id).unwrap(), Some(token));
    assert_eq!(store.accounts().unwrap(), vec![account]);
    assert_eq!(store.boot().unwrap().accounts, 1);
}

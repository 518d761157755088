//! One conformance suite for every store backend: each case runs on a fresh
//! SQLite file and on a fresh PostgreSQL database.

use chrono::{Duration, Utc};
use leadsift_core::{
    CallInfo, Channel, Classification, DedupKey, EmailAddress, EntryOrigin, JunkReason, LeadFilter, LeadStage,
    LeadStore, ListKind, Message, Nacked, NewListEntry, PhoneNumber, Published, Quarantined, Queue, Reason,
    ReasonOrigin, Route, RoutingPolicy, Sender, SourceRef, StageMove, TriageWrite, Triaged, Verdict,
};
use leadsift_core::{FeedbackOrigin, NewFeedback, NewModelVersion, StoreError};
use leadsift_integration_tests::TestDb;
use leadsift_store::SqlStore;

on_both_backends!(
    inbox_publish_is_idempotent_and_survives_redelivery,
    nack_retries_then_dead_letters,
    inquiry_creates_contact_and_lead_with_history,
    repeat_inquiry_attaches_to_open_lead_and_later_one_is_returning,
    spam_junks_and_blacklists_identities_not_domains,
    repeated_spam_in_one_batch_blacklists_once_at_the_message_that_earns_it,
    every_stored_reference_resolves,
    senders_with_legitimate_history_are_not_blacklisted,
    newsletter_and_bank_statement_are_stored_without_lead,
    review_route_keeps_unsure_messages_as_leads,
    stage_moves_are_recorded_and_junk_needs_a_reason,
    list_entries_match_domains_expire_and_keep_an_audit_trail,
    quarantine_keeps_raw_input,
    duplicate_triage_writes_nothing_twice,
    concurrent_batches_from_one_sender_share_one_contact_and_lead,
    feedback_from_moves_and_labels_is_kept_in_order,
    model_versions_keep_accepted_models_and_refusals,
    recent_short_calls_count_only_short_calls_from_that_number_in_the_window,
);

fn email_message(key: &str, from: &str, subject: &str) -> Message {
    let mut m = Message::new(Channel::Email, DedupKey::from_upstream_id(Channel::Email, key), Utc::now());
    m.sender =
        Sender { email: Some(EmailAddress::parse(from).unwrap()), name: Some("Ivan".into()), ..Sender::default() };
    m.subject = Some(subject.into());
    m.text = format!("{subject}: body");
    m.destination = Some("sales@our.example".into());
    m
}

fn classified(message: Message, verdict: Verdict, confidence: f64) -> Triaged {
    let classification = Classification {
        verdict,
        confidence,
        reasons: vec![Reason {
            rule: "TEST_RULE".into(),
            description: "test rule".into(),
            origin: ReasonOrigin::Rule,
            class: Some(verdict),
            score: 3.0,
            decisive: false,
        }],
    };
    let route = RoutingPolicy::default().route(&classification);
    Triaged { message, classification, route, source: Some("yandex".into()), campaign: Some("fasad".into()) }
}

async fn triage_one(store: &SqlStore, item: Triaged) -> TriageWrite {
    let mut writes = store.record_triage(&[item], Utc::now()).await.unwrap();
    writes.pop().unwrap()
}

fn lead_id(write: &TriageWrite) -> i64 {
    match write {
        TriageWrite::Stored { lead_id: Some(id), .. } => *id,
        other => panic!("expected a lead, got {other:?}"),
    }
}

async fn inbox_publish_is_idempotent_and_survives_redelivery(db: &TestDb) {
    let store = &db.store;
    let messages: Vec<Message> =
        (0..5).map(|i| email_message(&format!("m{i}@x"), "client@firm.example", "Need a quote")).collect();
    let first = store.publish(&messages).await.unwrap();
    assert!(first.iter().all(|p| *p == Published::New));
    let again = store.publish(&messages).await.unwrap();
    assert!(again.iter().all(|p| *p == Published::Duplicate));
    assert_eq!(store.depth().await.unwrap(), 5);

    let batch = store.receive(3).await.unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch[0].attempt, 1);
    // Leased rows are invisible to a second consumer.
    let rest = store.receive(10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(store.receive(10).await.unwrap().is_empty());

    // Store the first three, ack them; a message already stored is not re-queued.
    for delivery in &batch {
        triage_one(store, classified(delivery.message.clone(), Verdict::Inquiry, 0.99)).await;
    }
    store.ack(&batch.iter().map(|d| d.id).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(store.depth().await.unwrap(), 2);
    let republished = store.publish(&messages[..3]).await.unwrap();
    assert!(republished.iter().all(|p| *p == Published::Duplicate));
    assert_eq!(store.depth().await.unwrap(), 2);
}

async fn nack_retries_then_dead_letters(db: &TestDb) {
    let store = &db.store;
    store.publish(&[email_message("poison@x", "a@firm.example", "x")]).await.unwrap();
    let mut outcome = Nacked::WillRetry;
    // Default settings: 5 attempts; the retry delay is skipped by claiming directly.
    for attempt in 1..=5 {
        sqlx::query("UPDATE inbox SET lease_until = 0").execute(store.pool()).await.unwrap();
        let delivery = store.receive(1).await.unwrap().pop().expect("redelivered");
        assert_eq!(delivery.attempt, attempt);
        outcome = store.nack(delivery.id, "boom").await.unwrap();
    }
    assert_eq!(outcome, Nacked::DeadLettered);
    assert_eq!(store.depth().await.unwrap(), 0);
    let quarantined = store.quarantined(10).await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0].1.error.contains("boom"));
    assert_eq!(quarantined[0].1.channel, Some(Channel::Email));
}

async fn inquiry_creates_contact_and_lead_with_history(db: &TestDb) {
    let store = &db.store;
    let write =
        triage_one(store, classified(email_message("q1@x", "Client@Firm.example", "Quote"), Verdict::Inquiry, 0.97))
            .await;
    let TriageWrite::Stored { lead_created, ref blacklisted, .. } = write else { panic!("{write:?}") };
    assert!(lead_created && blacklisted.is_empty());
    let lead = store.lead(lead_id(&write)).await.unwrap().unwrap();
    assert_eq!(lead.stage, LeadStage::ContactClient);
    assert!(!lead.needs_review && !lead.returning_client);
    assert_eq!((lead.source.as_deref(), lead.campaign.as_deref()), (Some("yandex"), Some("fasad")));
    assert_eq!(lead.identities, vec![SourceRef::Email(EmailAddress::parse("client@firm.example").unwrap())]);
    assert_eq!(lead.reasons[0].rule, "TEST_RULE");
    assert_eq!(lead.title, "Ivan: Quote");
    let history = store.lead_history(lead.id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].from, history[0].to, history[0].actor.as_str()), (None, LeadStage::ContactClient, "triage"));
    let counts = store.message_counts().await.unwrap();
    assert_eq!(counts.by_verdict(Verdict::Inquiry), 1);
}

async fn repeat_inquiry_attaches_to_open_lead_and_later_one_is_returning(db: &TestDb) {
    let store = &db.store;
    let first = lead_id(
        &triage_one(store, classified(email_message("r1@x", "c@firm.example", "A"), Verdict::Inquiry, 0.99)).await,
    );
    // Same contact reached by phone as well as email: a call linked by the email identity.
    let mut second = email_message("r2@x", "c@firm.example", "B");
    second.sender.phone = Some(PhoneNumber::parse("+79162045581", "RU").unwrap());
    let write = triage_one(store, classified(second, Verdict::Inquiry, 0.99)).await;
    assert_eq!(lead_id(&write), first);
    assert!(matches!(write, TriageWrite::Stored { lead_created: false, .. }));
    let lead = store.lead(first).await.unwrap().unwrap();
    assert_eq!(lead.message_count, 2);
    assert_eq!(lead.identities.len(), 2, "phone identity linked to the contact");

    let conversion = leadsift_core::LeadConversion {
        lead_id: first,
        company: None,
        deal_title: None,
        amount: None,
        actor: "anna".into(),
        note: None,
    };
    store.convert_lead(&conversion, Utc::now()).await.unwrap();
    // A call from the phone alone now finds the same contact, who is returning.
    let mut call = Message::new(Channel::Call, DedupKey::from_upstream_id(Channel::Call, "pbx-1"), Utc::now());
    call.sender.phone = Some(PhoneNumber::parse("8 916 204-55-81", "RU").unwrap());
    call.call = Some(CallInfo { duration_secs: 0, answered: false });
    let third = lead_id(&triage_one(store, classified(call, Verdict::Inquiry, 0.9)).await);
    assert_ne!(third, first);
    let lead = store.lead(third).await.unwrap().unwrap();
    assert!(lead.returning_client);
    assert_eq!(lead.contact_id, store.lead(first).await.unwrap().unwrap().contact_id);
    assert_eq!(lead.stage, LeadStage::ContactClient, "a missed call is a lead to call back");
    assert!(lead.title.starts_with("Missed call from +79162045581"), "{}", lead.title);
}

async fn spam_junks_and_blacklists_identities_not_domains(db: &TestDb) {
    let store = &db.store;
    // One spam message junks the lead but does not blacklist: it takes two.
    let write =
        triage_one(store, classified(email_message("s1@x", "promo@gmail.com", "SEO"), Verdict::Spam, 0.99)).await;
    let TriageWrite::Stored { ref blacklisted, .. } = write else { panic!() };
    assert!(blacklisted.is_empty());
    let lead = store.lead(lead_id(&write)).await.unwrap().unwrap();
    assert_eq!((lead.stage, lead.junk_reason), (LeadStage::Junk, Some(JunkReason::Spam)));
    let write =
        triage_one(store, classified(email_message("s2@x", "promo@gmail.com", "SEO"), Verdict::Spam, 0.99)).await;
    let TriageWrite::Stored { ref blacklisted, .. } = write else { panic!() };
    assert_eq!(blacklisted, &vec![SourceRef::Email(EmailAddress::parse("promo@gmail.com").unwrap())]);
    let entries = store.list_entries(ListKind::Blacklist, Utc::now()).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].origin, EntryOrigin::Auto);
    assert!(entries[0].reason.contains("TEST_RULE"));
    // Someone else at gmail.com is not affected.
    let senders = vec![
        Sender { email: Some(EmailAddress::parse("promo@gmail.com").unwrap()), ..Sender::default() },
        Sender { email: Some(EmailAddress::parse("friend@gmail.com").unwrap()), ..Sender::default() },
    ];
    let standings = store.standings(&senders, Utc::now()).await.unwrap();
    assert!(standings[0].blocked.is_some());
    assert!(standings[1].blocked.is_none());
    // Non-target is junk but not blacklisted.
    let write =
        triage_one(store, classified(email_message("n1@x", "cv@firm.example", "Resume"), Verdict::NonTarget, 0.95))
            .await;
    let TriageWrite::Stored { ref blacklisted, .. } = write else { panic!() };
    assert!(blacklisted.is_empty());
    assert_eq!(store.lead(lead_id(&write)).await.unwrap().unwrap().junk_reason, Some(JunkReason::NonTarget));
    let audit = store.list_audit(ListKind::Blacklist, 10).await.unwrap();
    assert_eq!((audit.len(), audit[0].actor.as_str(), audit[0].action.as_str()), (1, "triage", "added"));
}

/// Several spam messages of one sender in one batch: the second adds the
/// entry (with one audit row), the others add nothing; a later batch from
/// the listed sender adds nothing either.
async fn repeated_spam_in_one_batch_blacklists_once_at_the_message_that_earns_it(db: &TestDb) {
    let store = &db.store;
    let spam = |key: &str, from: &str| classified(email_message(key, from, "SEO"), Verdict::Spam, 0.99);
    let batch = vec![
        spam("b1@x", "promo@seo.example"),
        spam("b2@x", "other@seo.example"),
        spam("b3@x", "promo@seo.example"),
        spam("b4@x", "promo@seo.example"),
        spam("b5@x", "other@seo.example"),
    ];
    let writes = store.record_triage(&batch, Utc::now()).await.unwrap();
    let blacklisted: Vec<Vec<String>> = writes
        .iter()
        .map(|w| match w {
            TriageWrite::Stored { blacklisted, .. } => blacklisted.iter().map(|id| id.value().to_owned()).collect(),
            TriageWrite::Duplicate => panic!("nothing here is a duplicate"),
        })
        .collect();
    let none = Vec::<String>::new;
    assert_eq!(
        blacklisted,
        vec![none(), none(), vec!["promo@seo.example".to_owned()], none(), vec!["other@seo.example".to_owned()]]
    );
    let later = store.record_triage(&[spam("b6@x", "promo@seo.example")], Utc::now()).await.unwrap();
    assert!(matches!(&later[0], TriageWrite::Stored { blacklisted, .. } if blacklisted.is_empty()));
    let entries = store.list_entries(ListKind::Blacklist, Utc::now()).await.unwrap();
    let mut listed: Vec<&str> = entries.iter().map(|e| e.target.value()).collect();
    listed.sort_unstable();
    assert_eq!(listed, vec!["other@seo.example", "promo@seo.example"]);
    let audit = store.list_audit(ListKind::Blacklist, 10).await.unwrap();
    assert_eq!(audit.len(), 2, "one audit row per entry: {audit:?}");
    assert!(audit.iter().all(|a| a.action == "added" && a.actor == "triage"));
}

/// Every lead, contact and message id a triage write stores points at a row
/// that exists (PostgreSQL declares no foreign keys among these rows; the
/// triage transaction alone keeps them whole).
async fn every_stored_reference_resolves(db: &TestDb) {
    let store = &db.store;
    let mut call = Message::new(Channel::Call, DedupKey::from_upstream_id(Channel::Call, "r-call"), Utc::now());
    call.sender.phone = Some(PhoneNumber::parse("+79161234567", "RU").unwrap());
    let mut both = email_message("r-both@x", "anna@firm.example", "order");
    both.sender.phone = Some(PhoneNumber::parse("+79161234567", "RU").unwrap());
    let first = vec![
        classified(email_message("r1@x", "ivan@firm.example", "price"), Verdict::Inquiry, 0.95),
        classified(email_message("r2@x", "ivan@firm.example", "again"), Verdict::Inquiry, 0.95),
        classified(call, Verdict::Inquiry, 0.9),
        classified(email_message("r3@x", "promo@seo.example", "SEO"), Verdict::Spam, 0.99),
        classified(email_message("r4@x", "news@shop.example", "sale"), Verdict::Newsletter, 0.99),
    ];
    let second = vec![
        classified(both, Verdict::Inquiry, 0.95),
        classified(email_message("r5@x", "ivan@firm.example", "third"), Verdict::Inquiry, 0.95),
        classified(email_message("r6@x", "promo@seo.example", "SEO"), Verdict::Spam, 0.99),
        classified(email_message("r7@x", "cv@firm.example", "resume"), Verdict::NonTarget, 0.95),
    ];
    let writes = [
        store.record_triage(&first, Utc::now()).await.unwrap(),
        store.record_triage(&second, Utc::now()).await.unwrap(),
    ];
    let mut leads = std::collections::HashSet::new();
    for write in writes.iter().flatten() {
        let TriageWrite::Stored { message_id, lead_id, .. } = write else { panic!("no duplicates here: {write:?}") };
        let stored = store.message(*message_id).await.unwrap().expect("the message id names a stored message");
        assert_eq!(stored.lead_id, *lead_id);
        if let Some(lead) = lead_id {
            assert!(store.lead(*lead).await.unwrap().is_some(), "lead {lead} exists");
            leads.insert(*lead);
        }
    }
    // ivan's three inquiries share a lead; anna, calling from the caller's
    // phone, joins the caller's open lead; each spam and the non-target open their own.
    assert_eq!(leads.len(), 5, "{leads:?}");
    let orphans: i64 = sqlx::query_scalar(
        "SELECT \
           (SELECT COUNT(*) FROM messages m WHERE m.lead_id IS NOT NULL \
              AND NOT EXISTS (SELECT 1 FROM leads l WHERE l.id = m.lead_id)) \
         + (SELECT COUNT(*) FROM messages m WHERE m.contact_id IS NOT NULL \
              AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = m.contact_id)) \
         + (SELECT COUNT(*) FROM leads l WHERE l.contact_id IS NOT NULL \
              AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = l.contact_id)) \
         + (SELECT COUNT(*) FROM contact_identities i \
              WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = i.contact_id)) \
         + (SELECT COUNT(*) FROM lead_stage_changes s \
              WHERE NOT EXISTS (SELECT 1 FROM leads l WHERE l.id = s.lead_id))",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    let linked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages m JOIN leads l ON l.id = m.lead_id \
         WHERE m.contact_id IS NOT NULL AND l.contact_id = m.contact_id",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(linked, 8, "every message with a lead has that lead's contact");
}

/// A sender with a history of legitimate mail is never blacklisted by spam
/// verdicts, however many: a feed with one spam-looking item must not lose
/// every later item.
async fn senders_with_legitimate_history_are_not_blacklisted(db: &TestDb) {
    let store = &db.store;
    let feed = "feed@news.example";
    triage_one(store, classified(email_message("f0@x", feed, "Digest"), Verdict::Newsletter, 0.99)).await;
    // Within one batch too: the earlier non-spam message counts.
    let batch: Vec<Triaged> =
        (1..=3).map(|i| classified(email_message(&format!("f{i}@x"), feed, "pills"), Verdict::Spam, 0.99)).collect();
    for write in store.record_triage(&batch, Utc::now()).await.unwrap() {
        let TriageWrite::Stored { blacklisted, .. } = write else { panic!() };
        assert!(blacklisted.is_empty());
    }
    assert!(store.list_entries(ListKind::Blacklist, Utc::now()).await.unwrap().is_empty());
    // Two new spam-only senders in one batch: the second message of each blacklists it.
    let batch: Vec<Triaged> = ["a", "b", "a", "b"]
        .iter()
        .enumerate()
        .map(|(i, who)| {
            classified(email_message(&format!("sp{i}@x"), &format!("{who}@spam.example"), "win"), Verdict::Spam, 0.99)
        })
        .collect();
    let writes = store.record_triage(&batch, Utc::now()).await.unwrap();
    let counts: Vec<usize> = writes
        .iter()
        .map(|w| match w {
            TriageWrite::Stored { blacklisted, .. } => blacklisted.len(),
            TriageWrite::Duplicate => panic!("not a duplicate"),
        })
        .collect();
    assert_eq!(counts, vec![0, 0, 1, 1]);
    assert_eq!(store.list_entries(ListKind::Blacklist, Utc::now()).await.unwrap().len(), 2);
}

async fn newsletter_and_bank_statement_are_stored_without_lead(db: &TestDb) {
    let store = &db.store;
    for (key, verdict) in [("nl@x", Verdict::Newsletter), ("bank@x", Verdict::BankStatement)] {
        let write =
            triage_one(store, classified(email_message(key, "news@shop.example", "Digest"), verdict, 0.99)).await;
        let TriageWrite::Stored { message_id, lead_id: None, .. } = write else { panic!("{write:?}") };
        let stored = store.message(message_id).await.unwrap().unwrap();
        assert_eq!(stored.classification.verdict, verdict);
        assert_eq!(stored.message.subject.as_deref(), Some("Digest"));
        assert!(stored.lead_id.is_none());
    }
    assert!(store.leads(&LeadFilter::default()).await.unwrap().is_empty());
}

async fn review_route_keeps_unsure_messages_as_leads(db: &TestDb) {
    let store = &db.store;
    let item = classified(email_message("u1@x", "who@firm.example", "hmm"), Verdict::Spam, 0.6);
    assert!(matches!(item.route, Route::Lead { needs_review: true, .. }));
    let id = lead_id(&triage_one(store, item).await);
    triage_one(store, classified(email_message("u2@x", "sure@firm.example", "order"), Verdict::Inquiry, 0.99)).await;
    let lead = store.lead(id).await.unwrap().unwrap();
    assert_eq!(lead.stage, LeadStage::ContactClient);
    assert!(lead.needs_review);
    assert!(lead.review_note.unwrap().contains("spam"));
    assert!(store.list_entries(ListKind::Blacklist, Utc::now()).await.unwrap().is_empty());
    let listed = store.leads(&LeadFilter::default()).await.unwrap();
    assert_eq!(listed[0].id, id, "review leads come first");
    let review = store.leads(&LeadFilter { needs_review: Some(true), ..LeadFilter::default() }).await.unwrap();
    assert_eq!(review.len(), 1);
}

async fn stage_moves_are_recorded_and_junk_needs_a_reason(db: &TestDb) {
    let store = &db.store;
    let id = lead_id(
        &triage_one(store, classified(email_message("mv@x", "c@firm.example", "q"), Verdict::Inquiry, 0.99)).await,
    );
    let to_junk = StageMove { lead_id: id, to: LeadStage::Junk, junk_reason: None, actor: "anna".into(), note: None };
    assert!(store.move_lead(&to_junk, Utc::now()).await.is_err());
    for stage in [LeadStage::Qualification, LeadStage::Offer] {
        let change = store
            .move_lead(
                &StageMove {
                    lead_id: id,
                    to: stage,
                    junk_reason: None,
                    actor: "anna".into(),
                    note: Some("called".into()),
                },
                Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(change.to, stage);
    }
    store.move_lead(&StageMove { junk_reason: Some(JunkReason::Duplicate), ..to_junk }, Utc::now()).await.unwrap();
    let history = store.lead_history(id).await.unwrap();
    let path: Vec<_> = history.iter().map(|c| c.to).collect();
    assert_eq!(path, vec![LeadStage::ContactClient, LeadStage::Qualification, LeadStage::Offer, LeadStage::Junk]);
    assert_eq!(history[3].junk_reason, Some(JunkReason::Duplicate));
    assert_eq!(history[1].reason.as_deref(), Some("called"));
    assert!(
        store
            .move_lead(
                &StageMove { lead_id: 999_999, to: LeadStage::Offer, junk_reason: None, actor: "a".into(), note: None },
                Utc::now()
            )
            .await
            .is_err()
    );
}

async fn list_entries_match_domains_expire_and_keep_an_audit_trail(db: &TestDb) {
    let store = &db.store;
    let now = Utc::now();
    let domain = SourceRef::guess("spam-seo.example", "RU").unwrap();
    let entry = NewListEntry {
        list: ListKind::Blacklist,
        target: domain.clone(),
        reason: "seo spam".into(),
        origin: EntryOrigin::Admin,
        actor: "admin".into(),
        expires_at: Some(now + Duration::hours(1)),
    };
    let added = store.add_list_entry(&entry, now).await.unwrap();
    assert_eq!(store.add_list_entry(&entry, now).await.unwrap().id, added.id, "adding twice is idempotent");
    let sender = Sender { email: Some(EmailAddress::parse("x@mail.spam-seo.example").unwrap()), ..Sender::default() };
    assert!(store.standings(std::slice::from_ref(&sender), now).await.unwrap()[0].blocked.is_some());
    // After expiry the entry no longer counts.
    let later = now + Duration::hours(2);
    assert!(store.standings(std::slice::from_ref(&sender), later).await.unwrap()[0].blocked.is_none());
    assert!(store.list_entries(ListKind::Blacklist, later).await.unwrap().is_empty());
    // Allowlist beats blacklist at classification time; both are reported.
    let allow = NewListEntry { list: ListKind::Allowlist, expires_at: None, reason: "partner".into(), ..entry.clone() };
    store.add_list_entry(&allow, now).await.unwrap();
    let standing = store.standings(std::slice::from_ref(&sender), now).await.unwrap().remove(0);
    assert!(standing.blocked.is_some() && standing.allowed.is_some());
    assert!(store.remove_list_entry(ListKind::Allowlist, &domain, "admin", "no longer a partner", now).await.unwrap());
    assert!(!store.remove_list_entry(ListKind::Allowlist, &domain, "admin", "again", now).await.unwrap());
    let audit = store.list_audit(ListKind::Allowlist, 10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, vec!["removed", "added"]);
    assert_eq!(audit[0].reason, "no longer a partner");
    // Re-adding after expiry retires the expired entry and creates a new one.
    let readded = store.add_list_entry(&NewListEntry { expires_at: None, ..entry.clone() }, later).await.unwrap();
    assert_ne!(readded.id, added.id);
    // The most specific entry is the one reported: the sender's own address
    // before its domain, whichever is older; other senders keep the domain's.
    let address = SourceRef::Email(EmailAddress::parse("x@mail.spam-seo.example").unwrap());
    let own = NewListEntry { target: address.clone(), reason: "this sender".into(), expires_at: None, ..entry };
    store.add_list_entry(&own, later).await.unwrap();
    let neighbour = Sender { email: Some(EmailAddress::parse("y@spam-seo.example").unwrap()), ..Sender::default() };
    let standings = store.standings(&[sender, neighbour], later).await.unwrap();
    assert_eq!(standings[0].blocked.as_ref().map(|e| &e.target), Some(&address));
    assert_eq!(standings[1].blocked.as_ref().map(|e| &e.target), Some(&domain));
}

async fn quarantine_keeps_raw_input(db: &TestDb) {
    let store = &db.store;
    let raw = vec![0u8, 159, 146, 150, b'x'];
    let id = store
        .quarantine(&Quarantined {
            origin: "inbox/bad.json".into(),
            channel: Some(Channel::Webform),
            error: "invalid JSON at 1:1".into(),
            raw: raw.clone(),
            at: Utc::now(),
        })
        .await
        .unwrap();
    let listed = store.quarantined(5).await.unwrap();
    assert_eq!(listed[0].0, id);
    assert_eq!(listed[0].1.raw, raw);
    assert_eq!(listed[0].1.channel, Some(Channel::Webform));
}

async fn duplicate_triage_writes_nothing_twice(db: &TestDb) {
    let store = &db.store;
    let item = classified(email_message("dup@x", "spammer@spam.example", "win"), Verdict::Spam, 0.99);
    let writes = store.record_triage(&[item.clone(), item.clone()], Utc::now()).await.unwrap();
    assert!(matches!(writes[0], TriageWrite::Stored { .. }));
    assert_eq!(writes[1], TriageWrite::Duplicate);
    assert_eq!(store.record_triage(&[item], Utc::now()).await.unwrap(), vec![TriageWrite::Duplicate]);
    assert_eq!(store.leads(&LeadFilter::default()).await.unwrap().len(), 1);
    // A redelivered duplicate does not count as a second spam message.
    assert!(store.list_entries(ListKind::Blacklist, Utc::now()).await.unwrap().is_empty());
    assert_eq!(store.message_counts().await.unwrap().total(), 1);
}

/// Two workers writing batches with inquiries from the same new sender at
/// the same time still create one contact and one open lead.
async fn concurrent_batches_from_one_sender_share_one_contact_and_lead(db: &TestDb) {
    for round in 0..5 {
        let from = format!("busy{round}@firm.example");
        let batches: Vec<Vec<Triaged>> = (0..4)
            .map(|worker| {
                (0..8)
                    .map(|i| {
                        classified(
                            email_message(&format!("c{round}-{worker}-{i}@x"), &from, "order"),
                            Verdict::Inquiry,
                            0.99,
                        )
                    })
                    .collect()
            })
            .collect();
        let tasks: Vec<_> = batches
            .into_iter()
            .map(|batch| {
                let store = db.store.clone();
                tokio::spawn(async move {
                    // A worker retries a batch that lost a race, as the triage loop does.
                    for _ in 0..10 {
                        if store.record_triage(&batch, Utc::now()).await.is_ok() {
                            return;
                        }
                    }
                    panic!("batch never committed");
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let leads: Vec<_> = db
            .store
            .leads(&LeadFilter::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.identities.iter().any(|id| id.value() == from))
            .collect();
        assert_eq!(leads.len(), 1, "round {round}: one open lead for the sender");
        assert_eq!(leads[0].message_count, 32);
    }
}

async fn feedback_from_moves_and_labels_is_kept_in_order(db: &TestDb) {
    let store = &db.store;
    let write =
        triage_one(store, classified(email_message("fb@x", "c@firm.example", "price?"), Verdict::Inquiry, 0.99)).await;
    let TriageWrite::Stored { message_id, lead_id: Some(lead), .. } = write else { panic!("{write:?}") };
    let to = |stage, junk_reason| StageMove { lead_id: lead, to: stage, junk_reason, actor: "anna".into(), note: None };
    store.move_lead(&to(LeadStage::Junk, Some(JunkReason::Spam)), Utc::now()).await.unwrap();
    store.move_lead(&to(LeadStage::ContactClient, None), Utc::now()).await.unwrap();
    // Duplicate and "other" say nothing about the text; an ordinary move neither.
    store.move_lead(&to(LeadStage::Junk, Some(JunkReason::Duplicate)), Utc::now()).await.unwrap();
    store.move_lead(&to(LeadStage::Qualification, None), Utc::now()).await.unwrap();
    let label =
        NewFeedback { message_id, label: Verdict::NonTarget, origin: FeedbackOrigin::Learn, actor: "boss".into() };
    store.record_feedback(&label, Utc::now()).await.unwrap();
    let missing = store.record_feedback(&NewFeedback { message_id: 999_999, ..label.clone() }, Utc::now()).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");

    let all = store.feedback(0, 100).await.unwrap();
    let labels: Vec<_> = all.iter().map(|f| (f.label, f.origin, f.actor.as_str())).collect();
    assert_eq!(
        labels,
        vec![
            (Verdict::Spam, FeedbackOrigin::LeadMove, "anna"),
            (Verdict::Inquiry, FeedbackOrigin::LeadMove, "anna"),
            (Verdict::Inquiry, FeedbackOrigin::LeadMove, "anna"),
            (Verdict::NonTarget, FeedbackOrigin::Learn, "boss"),
        ]
    );
    assert!(all.iter().all(|f| f.message_id == message_id && f.message.subject.as_deref() == Some("price?")));
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let rest = store.feedback(all[1].id, 100).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(store.feedback(all[0].id, 1).await.unwrap()[0].id, all[1].id);

    // The lead is in qualification now: its message counts as a worked inquiry.
    let worked = store.worked_lead_messages(10).await.unwrap();
    assert_eq!(worked.len(), 1);
    assert_eq!(worked[0].subject.as_deref(), Some("price?"));
}

async fn model_versions_keep_accepted_models_and_refusals(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.current_model_id().await.unwrap(), None);
    assert!(store.current_model().await.unwrap().is_none());
    let version = |accepted: bool, upto: i64, model: Option<Vec<u8>>| NewModelVersion {
        name: "default+feedback".into(),
        feedback_upto: upto,
        feedback_used: upto,
        accepted,
        note: if accepted { "accepted".into() } else { "refused: worse".into() },
        figures: "{}".into(),
        model,
    };
    let first = store.record_model_version(&version(true, 3, Some(vec![1, 2, 3, 0, 255])), Utc::now()).await.unwrap();
    let refused = store.record_model_version(&version(false, 5, None), Utc::now()).await.unwrap();
    assert!(refused > first);
    assert_eq!(store.current_model_id().await.unwrap(), Some(first));
    let (current, bytes) = store.current_model().await.unwrap().unwrap();
    assert_eq!((current.id, current.accepted, current.feedback_upto), (first, true, 3));
    assert_eq!(bytes, vec![1, 2, 3, 0, 255]);
    let history = store.model_versions(10).await.unwrap();
    let summary: Vec<_> = history.iter().map(|v| (v.id, v.accepted, v.note.as_str())).collect();
    assert_eq!(summary, vec![(refused, false, "refused: worse"), (first, true, "accepted")]);
    let newer = store.record_model_version(&version(true, 6, Some(vec![9; 700_000])), Utc::now()).await.unwrap();
    assert_eq!(store.current_model_id().await.unwrap(), Some(newer));
    assert_eq!(store.current_model().await.unwrap().unwrap().1.len(), 700_000);
}

async fn recent_short_calls_count_only_short_calls_from_that_number_in_the_window(db: &TestDb) {
    let store = &db.store;
    let robodialer = PhoneNumber::parse("+79031112233", "RU").unwrap();
    let now = Utc::now();
    let call = |key: &str, phone: &str, duration_secs: u32, minutes_ago: i64| {
        let mut m = Message::new(
            Channel::Call,
            DedupKey::from_upstream_id(Channel::Call, key),
            now - Duration::minutes(minutes_ago),
        );
        m.sender.phone = Some(PhoneNumber::parse(phone, "RU").unwrap());
        m.call = Some(CallInfo { duration_secs, answered: duration_secs > 0 });
        classified(m, Verdict::Inquiry, 0.9)
    };
    let batch = vec![
        call("short-1", "+79031112233", 0, 1),
        call("short-2", "+79031112233", 4, 3),
        call("long", "+79031112233", 300, 2),
        call("old", "+79031112233", 2, 60),
        call("other", "+79035554433", 1, 1),
    ];
    store.record_triage(&batch, now).await.unwrap();
    let since = now - Duration::minutes(10);
    let this_call = DedupKey::from_upstream_id(Channel::Call, "new");
    assert_eq!(store.recent_short_calls(&robodialer, since, 15, &this_call).await.unwrap(), 2);
    // The call being counted is not counted again on redelivery.
    let redelivered = DedupKey::from_upstream_id(Channel::Call, "short-1");
    assert_eq!(store.recent_short_calls(&robodialer, since, 15, &redelivered).await.unwrap(), 1);
    assert_eq!(store.recent_short_calls(&robodialer, since, 400, &this_call).await.unwrap(), 3);
    let nobody = PhoneNumber::parse("+79160000000", "RU").unwrap();
    assert_eq!(store.recent_short_calls(&nobody, since, 15, &this_call).await.unwrap(), 0);
}

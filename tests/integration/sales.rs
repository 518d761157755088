//! Lead lifecycle to deals, ad spend and the seven management reports: one
//! known scenario built through the store's own calls, every figure
//! checked exactly, on SQLite and PostgreSQL; then the CLI and the HTTP
//! API over the same data, which must return the same numbers.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use leadsift_core::report::{
    AcquisitionCostRow, BlacklistGrowth, ClientMixRow, ConversionRow, CurrencyNote, DealOutcomeRow, DealsInProgressRow,
    JunkReasonRow, LostReasonRow, SourceEffectivenessRow, SpendRevenueRow, VerdictCountRow,
};
use leadsift_core::{
    AdSpend, Amount, Channel, Classification, Currency, DealClosing, DealStage, DedupKey, EmailAddress, EntryOrigin,
    JunkReason, LeadConversion, LeadStage, LeadStore, ListKind, Message, Money, NewListEntry, PhoneNumber, Reason,
    ReasonOrigin, Report, ReportPeriod, RoutingPolicy, Sender, SourceRef, StageMove, StoreError, TriageWrite, Triaged,
    Verdict,
};
use leadsift_integration_tests::TestDb;
use serde_json::Value;

on_both_backends!(
    conversion_creates_contact_company_and_deal_in_one_step,
    deals_close_won_or_lost_with_their_rules,
    spend_import_is_idempotent_per_date_source_and_campaign,
    the_scenario_gives_every_report_figure_exactly,
);

const MSK: i32 = 3 * 3600;

/// A local Moscow time.
fn msk(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    FixedOffset::east_opt(MSK).unwrap().with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().with_timezone(&Utc)
}

fn rub(amount: &str) -> Money {
    Money { amount: Amount::parse(amount).unwrap(), currency: Currency::parse("RUB").unwrap() }
}

fn minor(amount: &str) -> Amount {
    Amount::parse(amount).unwrap()
}

fn november() -> ReportPeriod {
    ReportPeriod::new(
        NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        FixedOffset::east_opt(MSK).unwrap(),
        Currency::parse("RUB").unwrap(),
    )
    .unwrap()
}

/// Who sent a message.
enum Who {
    Email(&'static str),
    Phone(&'static str),
}

/// Triages one message at `at` and returns its lead id.
#[allow(clippy::too_many_arguments)]
async fn lead(
    store: &dyn LeadStore,
    key: &str,
    channel: Channel,
    from: Who,
    verdict: Verdict,
    source: &str,
    campaign: Option<&str>,
    at: DateTime<Utc>,
) -> i64 {
    let mut message = Message::new(channel, DedupKey::from_upstream_id(channel, key), at);
    message.sender = match from {
        Who::Email(email) => Sender { email: Some(EmailAddress::parse(email).unwrap()), ..Sender::default() },
        Who::Phone(phone) => Sender { phone: Some(PhoneNumber::parse(phone, "RU").unwrap()), ..Sender::default() },
    };
    message.sender.name = Some(format!("Client {key}"));
    message.subject = Some(format!("Inquiry {key}"));
    message.text = "Please quote a facade".into();
    let classification = Classification {
        verdict,
        confidence: 0.99,
        reasons: vec![Reason {
            rule: "TEST".into(),
            description: "test".into(),
            origin: ReasonOrigin::Rule,
            class: Some(verdict),
            score: 9.0,
            decisive: true,
        }],
    };
    let route = RoutingPolicy::default().route(&classification);
    let item =
        Triaged { message, classification, route, source: Some(source.into()), campaign: campaign.map(Into::into) };
    match store.record_triage(&[item], at).await.unwrap().pop().unwrap() {
        TriageWrite::Stored { lead_id: Some(id), lead_created: true, .. } => id,
        other => panic!("{key}: expected a new lead, got {other:?}"),
    }
}

fn conversion(lead_id: i64, company: Option<&str>, amount: Option<Money>) -> LeadConversion {
    LeadConversion {
        lead_id,
        company: company.map(Into::into),
        deal_title: None,
        amount,
        actor: "anna".into(),
        note: None,
    }
}

fn closing(
    deal_id: i64,
    outcome: DealStage,
    amount: Option<Money>,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> DealClosing {
    DealClosing {
        deal_id,
        outcome,
        amount,
        lost_reason: reason.map(Into::into),
        closed_at: Some(at),
        actor: "anna".into(),
    }
}

async fn conversion_creates_contact_company_and_deal_in_one_step(db: &TestDb) {
    let store = &db.store;
    let at = msk(2026, 11, 2, 10);
    let corporate = lead(
        store,
        "c1",
        Channel::Email,
        Who::Email("ivan@Stroy-Fasad.example"),
        Verdict::Inquiry,
        "yandex",
        Some("fasad"),
        at,
    )
    .await;
    let converted = store.convert_lead(&conversion(corporate, None, Some(rub("150000"))), at).await.unwrap();
    assert!(!converted.contact_created, "the lead's own contact is used");
    let company = converted.company.clone().expect("a company from the corporate domain");
    assert_eq!(
        (company.name.as_str(), company.domain.as_deref()),
        ("stroy-fasad.example", Some("stroy-fasad.example"))
    );
    assert!(converted.company_created);
    let deal = &converted.deal;
    assert_eq!((deal.stage, deal.lead_id, deal.company_id), (DealStage::InProgress, corporate, Some(company.id)));
    assert_eq!(deal.amount, Some(rub("150000")));
    assert_eq!(
        (deal.source.as_deref(), deal.campaign.as_deref(), deal.channel),
        (Some("yandex"), Some("fasad"), Channel::Email)
    );
    assert_eq!(deal.title, "Client c1: Inquiry c1");
    let lead_now = store.lead(corporate).await.unwrap().unwrap();
    assert_eq!(lead_now.stage, LeadStage::Converted);
    let history = store.lead_history(corporate).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last.from, last.to, last.actor.as_str()),
        (Some(LeadStage::ContactClient), LeadStage::Converted, "anna")
    );
    assert_eq!(last.reason.as_deref(), Some(format!("converted into deal {}", deal.id).as_str()));

    // A colleague from the same firm links to the same company.
    let colleague =
        lead(store, "c2", Channel::Email, Who::Email("olga@stroy-fasad.example"), Verdict::Inquiry, "yandex", None, at)
            .await;
    let second = store.convert_lead(&conversion(colleague, None, None), at).await.unwrap();
    assert_eq!(second.company.as_ref().map(|c| c.id), Some(company.id));
    assert!(!second.company_created);

    // Free mail says nothing about an employer; a phone neither.
    let free = lead(store, "c3", Channel::Email, Who::Email("petr@gmail.com"), Verdict::Inquiry, "vk", None, at).await;
    assert_eq!(store.convert_lead(&conversion(free, None, None), at).await.unwrap().company, None);
    let call = lead(store, "c4", Channel::Call, Who::Phone("+79160000004"), Verdict::Inquiry, "avito", None, at).await;
    // An explicit company is found by name whatever its spelling, or created.
    let explicit = store.convert_lead(&conversion(call, Some("  ООО  «Ёлка» "), None), at).await.unwrap();
    assert!(explicit.company_created);
    let again = lead(store, "c5", Channel::Call, Who::Phone("+79160000005"), Verdict::Inquiry, "avito", None, at).await;
    let same = store.convert_lead(&conversion(again, Some("ооо «елка»"), None), at).await.unwrap();
    assert_eq!(same.company.as_ref().map(|c| c.id), explicit.company.as_ref().map(|c| c.id));

    // Not twice, not from junk, and `converted` is reached only by converting.
    let error = store.convert_lead(&conversion(corporate, None, None), at).await.unwrap_err();
    assert!(matches!(&error, StoreError::Invalid(m) if m.contains("already converted into deal")), "{error}");
    let spam =
        lead(store, "c6", Channel::Email, Who::Email("promo@spam.example"), Verdict::Spam, "yandex", None, at).await;
    let error = store.convert_lead(&conversion(spam, None, None), at).await.unwrap_err();
    assert!(matches!(&error, StoreError::Invalid(m) if m.contains("is junk")), "{error}");
    let to_converted =
        StageMove { lead_id: again, to: LeadStage::Converted, junk_reason: None, actor: "a".into(), note: None };
    assert!(matches!(store.move_lead(&to_converted, at).await, Err(StoreError::Invalid(_))));
    let out_of_converted =
        StageMove { lead_id: corporate, to: LeadStage::Offer, junk_reason: None, actor: "a".into(), note: None };
    assert!(matches!(store.move_lead(&out_of_converted, at).await, Err(StoreError::Invalid(_))));
    assert!(matches!(store.convert_lead(&conversion(999_999, None, None), at).await, Err(StoreError::NotFound(_))));
}

async fn deals_close_won_or_lost_with_their_rules(db: &TestDb) {
    let store = &db.store;
    let at = msk(2026, 11, 2, 10);
    let a =
        lead(store, "d1", Channel::Email, Who::Email("a@alpha.example"), Verdict::Inquiry, "yandex", None, at).await;
    let b = lead(store, "d2", Channel::Email, Who::Email("b@beta.example"), Verdict::Inquiry, "yandex", None, at).await;
    let deal_a = store.convert_lead(&conversion(a, None, None), at).await.unwrap().deal.id;
    let deal_b = store.convert_lead(&conversion(b, None, Some(rub("1000"))), at).await.unwrap().deal.id;

    // Won needs an amount; lost needs a reason; not before the deal existed.
    let later = msk(2026, 11, 20, 12);
    let error = store.close_deal(&closing(deal_a, DealStage::Won, None, None, later), later).await.unwrap_err();
    assert!(error.to_string().contains("needs its amount"), "{error}");
    let error = store.close_deal(&closing(deal_b, DealStage::Lost, None, None, later), later).await.unwrap_err();
    assert!(error.to_string().contains("needs a lost reason"), "{error}");
    let error = store
        .close_deal(&closing(deal_b, DealStage::Lost, None, Some("price"), msk(2026, 10, 1, 0)), later)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("before it was created"), "{error}");

    let won = store.close_deal(&closing(deal_a, DealStage::Won, Some(rub("99.90")), None, later), later).await.unwrap();
    assert_eq!((won.stage, won.amount.clone(), won.closed_at), (DealStage::Won, Some(rub("99.90")), Some(later)));
    let lost = store
        .close_deal(&closing(deal_b, DealStage::Lost, None, Some("  went to a competitor "), later), later)
        .await
        .unwrap();
    assert_eq!((lost.stage, lost.amount.clone()), (DealStage::Lost, Some(rub("1000"))), "keeps its expected amount");
    assert_eq!(lost.lost_reason.as_deref(), Some("went to a competitor"));
    let error = store.close_deal(&closing(deal_a, DealStage::Lost, None, Some("x"), later), later).await.unwrap_err();
    assert!(error.to_string().contains("already closed as won"), "{error}");
    assert!(matches!(
        store.close_deal(&closing(999_999, DealStage::Lost, None, Some("x"), later), later).await,
        Err(StoreError::NotFound(_))
    ));

    let listed = store.deals(&leadsift_core::DealFilter { stage: Some(DealStage::Won), limit: None }).await.unwrap();
    assert_eq!(listed.iter().map(|d| d.id).collect::<Vec<_>>(), [deal_a]);
    assert_eq!(store.deal(deal_b).await.unwrap().unwrap(), lost);
}

fn spend(date: (i32, u32, u32), source: &str, campaign: &str, amount: &str, currency: &str) -> AdSpend {
    AdSpend {
        date: NaiveDate::from_ymd_opt(date.0, date.1, date.2).unwrap(),
        source: source.into(),
        campaign: campaign.into(),
        amount: minor(amount),
        currency: Currency::parse(currency).unwrap(),
    }
}

async fn spend_import_is_idempotent_per_date_source_and_campaign(db: &TestDb) {
    let store = &db.store;
    let lines = vec![
        spend((2026, 11, 1), "yandex", "fasad", "10000", "RUB"),
        spend((2026, 11, 1), "yandex", "", "500", "RUB"),
        spend((2026, 11, 2), "vk", "calc", "2000.50", "RUB"),
    ];
    let first = store.import_spend(&lines, Utc::now()).await.unwrap();
    assert_eq!((first.inserted, first.updated, first.unchanged), (3, 0, 0));
    let again = store.import_spend(&lines, Utc::now()).await.unwrap();
    assert_eq!((again.inserted, again.updated, again.unchanged), (0, 0, 3));
    let corrected =
        vec![spend((2026, 11, 2), "vk", "calc", "2100", "RUB"), spend((2026, 11, 3), "vk", "calc", "1", "RUB")];
    let outcome = store.import_spend(&corrected, Utc::now()).await.unwrap();
    assert_eq!((outcome.inserted, outcome.updated, outcome.unchanged), (1, 1, 0));
    let stored = store
        .spend(NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(), NaiveDate::from_ymd_opt(2026, 11, 30).unwrap())
        .await
        .unwrap();
    assert_eq!(
        stored,
        vec![spend((2026, 11, 2), "vk", "calc", "2100", "RUB"), spend((2026, 11, 3), "vk", "calc", "1", "RUB")]
    );
}

/// The scenario of the report test; returns nothing, the figures are in
/// [`expected_november`].
pub(crate) async fn build_scenario(store: &dyn LeadStore) {
    use Channel::{Call, Email, Webform};
    use Verdict::{Inquiry, Spam};
    // Before November: client A's first lead, converted in October, won in November.
    let l0 = lead(
        store,
        "l0",
        Email,
        Who::Email("a@alpha.example"),
        Inquiry,
        "yandex",
        Some("fasad"),
        msk(2026, 10, 20, 12),
    )
    .await;
    let d0 =
        store.convert_lead(&conversion(l0, None, Some(rub("100000"))), msk(2026, 10, 22, 12)).await.unwrap().deal.id;
    store
        .close_deal(
            &closing(d0, DealStage::Won, Some(rub("120000")), None, msk(2026, 11, 10, 12)),
            msk(2026, 11, 10, 12),
        )
        .await
        .unwrap();

    // November's leads. The first hour of Nov 1 in Moscow is still October in UTC.
    let l1 =
        lead(store, "l1", Email, Who::Email("b@beta.example"), Inquiry, "yandex", Some("fasad"), msk(2026, 11, 1, 1))
            .await;
    let d1 = store
        .convert_lead(&conversion(l1, Some("Beta LLC"), Some(rub("50000"))), msk(2026, 11, 3, 12))
        .await
        .unwrap()
        .deal
        .id;
    store
        .close_deal(
            &closing(d1, DealStage::Won, Some(rub("55000.50")), None, msk(2026, 11, 20, 12)),
            msk(2026, 11, 20, 12),
        )
        .await
        .unwrap();

    let l2 =
        lead(store, "l2", Email, Who::Email("a@alpha.example"), Inquiry, "yandex", Some("fasad"), msk(2026, 11, 4, 12))
            .await;
    let d2 = store.convert_lead(&conversion(l2, None, Some(rub("30000"))), msk(2026, 11, 5, 12)).await.unwrap().deal.id;
    store
        .close_deal(&closing(d2, DealStage::Lost, None, Some("price"), msk(2026, 11, 25, 12)), msk(2026, 11, 25, 12))
        .await
        .unwrap();

    let _l3 = lead(store, "l3", Call, Who::Phone("+79160000003"), Inquiry, "avito", None, msk(2026, 11, 6, 12)).await;
    let _l4 =
        lead(store, "l4", Email, Who::Email("promo@spam.example"), Spam, "yandex", Some("fasad"), msk(2026, 11, 7, 12))
            .await;
    let l5 =
        lead(store, "l5", Webform, Who::Email("e@gmail.com"), Inquiry, "vk", Some("calc"), msk(2026, 11, 8, 12)).await;
    let junk = StageMove {
        lead_id: l5,
        to: LeadStage::Junk,
        junk_reason: Some(JunkReason::NonTarget),
        actor: "anna".into(),
        note: None,
    };
    store.move_lead(&junk, msk(2026, 11, 9, 12)).await.unwrap();
    let l6 = lead(store, "l6", Call, Who::Phone("+79160000006"), Inquiry, "avito", None, msk(2026, 11, 28, 12)).await;
    store.convert_lead(&conversion(l6, None, Some(rub("7000"))), msk(2026, 12, 2, 12)).await.unwrap();
    let l7 = lead(
        store,
        "l7",
        Email,
        Who::Email("g@gamma.example"),
        Inquiry,
        "yandex",
        Some("fasad"),
        msk(2026, 11, 29, 12),
    )
    .await;
    let usd = Money { amount: minor("1000"), currency: Currency::parse("USD").unwrap() };
    store.convert_lead(&conversion(l7, None, Some(usd)), msk(2026, 11, 30, 10)).await.unwrap();
    // After November: nothing of it counts.
    let _l8 =
        lead(store, "l8", Email, Who::Email("h@eta.example"), Inquiry, "yandex", Some("fasad"), msk(2026, 12, 1, 0))
            .await;

    store
        .import_spend(
            &[
                spend((2026, 11, 1), "yandex", "fasad", "10000", "RUB"),
                spend((2026, 11, 15), "yandex", "fasad", "5000", "RUB"),
                spend((2026, 11, 10), "vk", "calc", "2000", "RUB"),
                spend((2026, 11, 10), "avito", "", "1000", "USD"),
                spend((2026, 10, 31), "yandex", "fasad", "777", "RUB"),
                spend((2026, 12, 1), "yandex", "fasad", "9999", "RUB"),
            ],
            Utc::now(),
        )
        .await
        .unwrap();

    let entry = |value: &str, origin: EntryOrigin| NewListEntry {
        list: ListKind::Blacklist,
        target: SourceRef::guess(value, "RU").unwrap(),
        reason: "test".into(),
        origin,
        actor: "anna".into(),
        expires_at: None,
    };
    store.add_list_entry(&entry("old@spam.example", EntryOrigin::Admin), msk(2026, 10, 1, 12)).await.unwrap();
    store.add_list_entry(&entry("seo@spam.example", EntryOrigin::Admin), msk(2026, 11, 12, 12)).await.unwrap();
    store.add_list_entry(&entry("+79169999999", EntryOrigin::Auto), msk(2026, 11, 13, 12)).await.unwrap();
    let seo = SourceRef::guess("seo@spam.example", "RU").unwrap();
    store
        .remove_list_entry(ListKind::Blacklist, &seo, "anna", "a client after all", msk(2026, 11, 14, 12))
        .await
        .unwrap();
}

fn row_client_mix(source: &str, channel: Option<Channel>, inquiries: i64, new: i64, returning: i64) -> ClientMixRow {
    ClientMixRow {
        source: source.into(),
        channel,
        inquiries,
        new_clients: new,
        returning_clients: returning,
        returning_share: Some(returning as f64 / inquiries as f64),
    }
}

fn row_conversion(source: &str, channel: Option<Channel>, inquiries: i64, converted: i64) -> ConversionRow {
    ConversionRow {
        source: source.into(),
        channel,
        inquiries,
        converted,
        conversion_rate: Some(converted as f64 / inquiries as f64),
    }
}

/// Every figure of November in the scenario, worked out by hand.
pub(crate) fn expected_november() -> Report {
    use Channel::{Call, Email, Webform};
    let roi_yandex = (5_500_050.0 - 1_500_000.0) / 1_500_000.0;
    Report {
        period: november(),
        // L1, L2 (returning: A had L0), L7 by email from yandex; L3, L6 calls from avito; L5 a vk form.
        // L4 (spam, junked by triage on arrival) is no inquiry; L0 and L8 are outside November.
        client_mix: vec![
            row_client_mix("avito", Some(Call), 2, 2, 0),
            row_client_mix("vk", Some(Webform), 1, 1, 0),
            row_client_mix("yandex", Some(Email), 3, 2, 1),
            row_client_mix("total", None, 6, 5, 1),
        ],
        // yandex: 15,000 spent in November (not the October or December lines), new clients
        // converted L1 and L7 (L2 is returning) -> 7,500 each. vk spent 2,000 and converted nobody.
        acquisition_cost: vec![
            AcquisitionCostRow {
                source: "vk".into(),
                spend: minor("2000"),
                new_clients_converted: 0,
                cost_per_new_client: None,
            },
            AcquisitionCostRow {
                source: "yandex".into(),
                spend: minor("15000"),
                new_clients_converted: 2,
                cost_per_new_client: Some(minor("7500")),
            },
        ],
        // Best won revenue first; then fewer junk.
        source_effectiveness: vec![
            SourceEffectivenessRow {
                source: "yandex".into(),
                leads: 4,
                junk: 1,
                junk_share: Some(0.25),
                converted: 3,
                conversion_rate: Some(1.0),
                won_deals: 1,
                won_revenue: minor("55000.50"),
                spend: minor("15000"),
                roi: Some(roi_yandex),
            },
            SourceEffectivenessRow {
                source: "avito".into(),
                leads: 2,
                junk: 0,
                junk_share: Some(0.0),
                converted: 0,
                conversion_rate: Some(0.0),
                won_deals: 0,
                won_revenue: Amount::ZERO,
                spend: Amount::ZERO,
                roi: None,
            },
            SourceEffectivenessRow {
                source: "vk".into(),
                leads: 1,
                junk: 1,
                junk_share: Some(1.0),
                converted: 0,
                conversion_rate: Some(0.0),
                won_deals: 0,
                won_revenue: Amount::ZERO,
                spend: minor("2000"),
                roi: Some(-1.0),
            },
        ],
        // L6 converted on Dec 2: after the period, so not counted.
        conversions: vec![
            row_conversion("avito", Some(Call), 2, 0),
            row_conversion("vk", Some(Webform), 1, 0),
            row_conversion("yandex", Some(Email), 3, 3),
            row_conversion("total", None, 6, 3),
        ],
        // Closed in November: D0 won 120,000 (its lead is October's), D1 won 55,000.50, D2 lost 30,000.
        deal_outcomes: vec![
            DealOutcomeRow {
                source: "yandex".into(),
                channel: Some(Email),
                won: 2,
                won_amount: minor("175000.50"),
                lost: 1,
                lost_amount: minor("30000"),
                win_rate: Some(2.0 / 3.0),
            },
            DealOutcomeRow {
                source: "total".into(),
                channel: None,
                won: 2,
                won_amount: minor("175000.50"),
                lost: 1,
                lost_amount: minor("30000"),
                win_rate: Some(2.0 / 3.0),
            },
        ],
        lost_reasons: vec![LostReasonRow { reason: "price".into(), deals: 1, amount: minor("30000") }],
        // Open at some moment of November: D0 (until Nov 10), D1, D2, D7 (still open; in USD, so not summed).
        deals_in_progress: vec![
            DealsInProgressRow {
                source: "yandex".into(),
                channel: Some(Email),
                deals: 4,
                open_at_end: 1,
                amount: minor("205000.50"),
            },
            DealsInProgressRow {
                source: "total".into(),
                channel: None,
                deals: 4,
                open_at_end: 1,
                amount: minor("205000.50"),
            },
        ],
        spend_vs_revenue: vec![
            SpendRevenueRow {
                source: "avito".into(),
                campaign: "".into(),
                spend: Amount::ZERO,
                leads: 2,
                deals: 0,
                won_deals: 0,
                won_revenue: Amount::ZERO,
                roi: None,
            },
            SpendRevenueRow {
                source: "vk".into(),
                campaign: "calc".into(),
                spend: minor("2000"),
                leads: 1,
                deals: 0,
                won_deals: 0,
                won_revenue: Amount::ZERO,
                roi: Some(-1.0),
            },
            SpendRevenueRow {
                source: "yandex".into(),
                campaign: "fasad".into(),
                spend: minor("15000"),
                leads: 4,
                deals: 3,
                won_deals: 1,
                won_revenue: minor("55000.50"),
                roi: Some(roi_yandex),
            },
        ],
        messages_by_verdict: vec![
            VerdictCountRow { channel: Email, verdict: Verdict::Inquiry, messages: 3 },
            VerdictCountRow { channel: Email, verdict: Verdict::Spam, messages: 1 },
            VerdictCountRow { channel: Call, verdict: Verdict::Inquiry, messages: 2 },
            VerdictCountRow { channel: Webform, verdict: Verdict::Inquiry, messages: 1 },
        ],
        junk_by_reason: vec![
            JunkReasonRow { reason: "non_target".into(), by_triage: 0, by_people: 1 },
            JunkReasonRow { reason: "spam".into(), by_triage: 1, by_people: 0 },
        ],
        blacklist: BlacklistGrowth { added: 2, added_automatically: 1, removed: 1, active_at_end: 2 },
        currency_note: CurrencyNote { deals_in_other_currencies: 1, spend_lines_in_other_currencies: 1 },
    }
}

async fn the_scenario_gives_every_report_figure_exactly(db: &TestDb) {
    build_scenario(&db.store).await;
    let report = db.store.report(&november()).await.unwrap();
    let expected = expected_november();
    // Section by section first, so a failure names the report.
    assert_eq!(report.client_mix, expected.client_mix, "1. new vs returning");
    assert_eq!(report.acquisition_cost, expected.acquisition_cost, "2. cost of a new client");
    assert_eq!(report.source_effectiveness, expected.source_effectiveness, "3. effective sources");
    assert_eq!(report.conversions, expected.conversions, "4. conversions");
    assert_eq!(report.deal_outcomes, expected.deal_outcomes, "5. won vs lost");
    assert_eq!(report.lost_reasons, expected.lost_reasons, "5. lost reasons");
    assert_eq!(report.deals_in_progress, expected.deals_in_progress, "6. in progress");
    assert_eq!(report.spend_vs_revenue, expected.spend_vs_revenue, "7. spend vs revenue");
    assert_eq!(report.messages_by_verdict, expected.messages_by_verdict, "triage: verdicts");
    assert_eq!(report.junk_by_reason, expected.junk_by_reason, "triage: junk");
    assert_eq!(report.blacklist, expected.blacklist, "triage: blacklist");
    assert_eq!(report, expected);

    // An empty period has every total at zero and no rows.
    let empty = ReportPeriod::new(
        NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
        FixedOffset::east_opt(MSK).unwrap(),
        Currency::parse("RUB").unwrap(),
    )
    .unwrap();
    let report = db.store.report(&empty).await.unwrap();
    assert_eq!(report.client_mix, vec![ClientMixRow { source: "total".into(), ..Default::default() }]);
    assert!(report.source_effectiveness.is_empty() && report.messages_by_verdict.is_empty());
    assert_eq!(report.blacklist, BlacklistGrowth::default());
}

/// The CLI and `GET /api/reports` over the same SQLite file: the same JSON,
/// the same CSV; spend files and lead moves through both.
#[tokio::test]
async fn cli_and_http_api_return_the_same_reports_and_refuse_bad_input() {
    let db = TestDb::sqlite().await;
    build_scenario(&db.store).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leadsift.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[intake]\ndrop_folder = \"\"\n\
             [reports]\ncurrency = \"RUB\"\nutc_offset = \"+03:00\"\n[api]\ntoken = \"api-token-1\"\n",
            db.url
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let output =
            leadsift_integration_tests::leadsift_command().arg("--config").arg(&config).args(args).output().unwrap();
        (output.status.code(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    };
    let (code, json_cli, stderr) = cli(&["report", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let parsed: Value = serde_json::from_str(&json_cli).unwrap();
    assert_eq!(parsed["source_effectiveness"][0]["won_revenue"], "55000.50");
    assert_eq!(parsed["client_mix"][3]["inquiries"], 6);
    let (code, csv_cli, _) = cli(&["report", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "csv"]);
    assert_eq!(code, Some(0));
    assert!(csv_cli.starts_with("report,source,channel,campaign,reason,verdict,metric,value\n"), "{csv_cli}");
    assert!(csv_cli.contains("\nacquisition_cost,yandex,,,,,cost_per_new_client,7500.00\n"), "{csv_cli}");
    let (code, table, _) = cli(&["report", "--from", "2026-11-01", "--to", "2026-11-30"]);
    assert_eq!(code, Some(0));
    assert!(table.contains("3. Most effective sources") && table.contains("266.7%"), "{table}");
    let (code, _, stderr) = cli(&["report", "--from", "2026-11-30", "--to", "2026-11-01"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("ends (2026-11-01) before it starts"), "{stderr}");

    // Spend files: every bad line named, nothing imported; then a good file twice.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "date;source;campaign;amount\n2026-11-20;yandex;fasad;1 000,00\n2026-11-31;yandex;x;5\n;vk;a;abc\n",
    )
    .unwrap();
    let (code, _, stderr) = cli(&["spend", "import", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("bad.csv:3: invalid date \"2026-11-31\""), "{stderr}");
    assert!(stderr.contains("bad.csv:4: invalid date \"\""), "{stderr}");
    assert!(stderr.contains("nothing imported"), "{stderr}");
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "date,source,campaign,amount,currency\n2026-11-20,yandex,fasad,1000,RUB\n").unwrap();
    let (code, stdout, stderr) = cli(&["spend", "import", good.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("1 new, 0 updated, 0 unchanged"), "{stdout}");
    let (_, stdout, _) = cli(&["spend", "import", good.to_str().unwrap()]);
    assert!(stdout.contains("0 new, 0 updated, 1 unchanged"), "{stdout}");

    let mut command = leadsift_integration_tests::leadsift_command();
    command.args(["--config", config.to_str().unwrap(), "run"]);
    let daemon = crate::pipeline::Daemon::spawn(&mut command);
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", daemon.address);
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let reports = "/api/reports?from=2026-11-01&to=2026-11-30&format=json";
    assert_eq!(get(reports, None).await.unwrap().status(), 401);
    assert_eq!(get(reports, Some("wrong")).await.unwrap().status(), 401);
    let response = get(reports, Some("api-token-1")).await.unwrap();
    assert_eq!(response.status(), 200);
    let json_api: Value = response.json().await.unwrap();
    // The CLI ran before the spend import above; take it again for the comparison.
    let (_, json_cli, _) = cli(&["report", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json"]);
    assert_eq!(json_api, serde_json::from_str::<Value>(&json_cli).unwrap());
    assert_eq!(json_api["spend_vs_revenue"][2]["spend"], "16000.00", "the imported line counts");
    let csv_api = get("/api/reports?from=2026-11-01&to=2026-11-30&format=csv", Some("api-token-1")).await.unwrap();
    let (_, csv_cli, _) = cli(&["report", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "csv"]);
    assert_eq!(csv_api.text().await.unwrap(), csv_cli);
    let bad_query = get("/api/reports?from=2026-11-01&to=nope", Some("api-token-1")).await.unwrap();
    assert_eq!(bad_query.status(), 400);

    // Lead moves and conversion through the API, recorded with the actor.
    let leads: Value = get("/api/leads?stage=contact_client", Some("api-token-1")).await.unwrap().json().await.unwrap();
    let open: Vec<i64> = leads.as_array().unwrap().iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert!(!open.is_empty());
    let post = |path: String, body: Value| client.post(url(&path)).bearer_auth("api-token-1").json(&body).send();
    let moved =
        post(format!("/api/leads/{}/move", open[0]), serde_json::json!({"stage": "qualification", "actor": "boris"}))
            .await
            .unwrap();
    assert_eq!(moved.status(), 200);
    let junk_without_reason =
        post(format!("/api/leads/{}/move", open[0]), serde_json::json!({"stage": "junk"})).await.unwrap();
    assert_eq!(junk_without_reason.status(), 422);
    let converted = post(
        format!("/api/leads/{}/convert", open[0]),
        serde_json::json!({"company": "Acme", "amount": "5000.00", "actor": "boris"}),
    )
    .await
    .unwrap();
    assert_eq!(converted.status(), 201);
    let converted: Value = converted.json().await.unwrap();
    let deal = converted["deal"]["id"].as_i64().unwrap();
    let closed = post(format!("/api/deals/{deal}/close"), serde_json::json!({"outcome": "won"})).await.unwrap();
    assert_eq!(closed.status(), 200);
    let closed: Value = closed.json().await.unwrap();
    assert_eq!((closed["stage"].as_str(), closed["amount"]["amount"].as_str()), (Some("won"), Some("5000.00")));
    let history = db.store.lead_history(open[0]).await.unwrap();
    assert_eq!(history.iter().filter(|c| c.actor == "boris").count(), 2);
    let garbage = client
        .post(url(&format!("/api/leads/{}/move", open[0])))
        .bearer_auth("api-token-1")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let missing = post("/api/deals/999999/close".into(), serde_json::json!({"outcome": "lost", "lost_reason": "x"}))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let spend = client
        .post(url("/api/spend"))
        .bearer_auth("api-token-1")
        .body("date,source,amount\n2026-11-40,x,1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(spend.status(), 400);
    let errors: Value = spend.json().await.unwrap();
    assert_eq!(errors["lines"][0]["line"], 2);

    let metrics = client.get(url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "leadsift_api_requests_total{route=\"/api/reports\",status=\"401\"} 2",
        "leadsift_api_requests_total{route=\"/api/leads/{id}/move\",status=\"422\"} 1",
        "leadsift_api_requests_total{route=\"/api/spend\",status=\"400\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics:\n{metrics}");
    }
}

/// Without a token the API is not there at all.
#[tokio::test]
async fn the_api_is_off_without_a_token() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leadsift.toml");
    std::fs::write(
        &config,
        format!("[database]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[intake]\ndrop_folder = \"\"\n", db.url),
    )
    .unwrap();
    let mut command = leadsift_integration_tests::leadsift_command();
    command.args(["--config", config.to_str().unwrap(), "run"]);
    let daemon = crate::pipeline::Daemon::spawn(&mut command);
    let response = reqwest::Client::new()
        .get(format!("http://{}/api/reports?from=2026-11-01&to=2026-11-30", daemon.address))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

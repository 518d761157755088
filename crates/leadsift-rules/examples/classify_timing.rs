//! How long the built-in rules take per message, on ~5 KB emails.
//!
//! `cargo run --release -p leadsift-rules --example classify_timing`
//!
//! The whole pipeline (MIME parse + classify) must handle 20,000 messages a
//! second on one core. Each message here is a signal paragraph (the part
//! the rules react to) followed by ordinary prose up to ~5 KB, the way real
//! mail looks; text that repeats rule phrases over and over costs more.

use std::hint::black_box;
use std::time::Instant;

use chrono::DateTime;
use leadsift_core::{Channel, Classifier, DedupKey, EmailAddress, Header, Message, SenderStanding};
use leadsift_rules::RuleSet;

const RUSSIAN_WORDS: &[&str] = &[
    "мы",
    "работаем",
    "с",
    "вашей",
    "компанией",
    "уже",
    "несколько",
    "лет",
    "и",
    "довольны",
    "качеством",
    "товара",
    "в",
    "этом",
    "году",
    "планируем",
    "расширить",
    "производство",
    "нового",
    "цеха",
    "оборудование",
    "должно",
    "соответствовать",
    "требованиям",
    "проекта",
    "просим",
    "учесть",
    "сроки",
    "монтажа",
    "на",
    "объекте",
    "заказчика",
];
const ENGLISH_WORDS: &[&str] = &[
    "we",
    "have",
    "been",
    "working",
    "with",
    "your",
    "team",
    "for",
    "several",
    "years",
    "and",
    "the",
    "quality",
    "of",
    "service",
    "is",
    "great",
    "this",
    "season",
    "our",
    "plans",
    "include",
    "a",
    "new",
    "warehouse",
    "near",
    "city",
    "project",
    "schedule",
    "depends",
    "on",
    "delivery",
    "dates",
];

/// Deterministic filler prose, so runs are comparable.
fn prose(words: &[&str], bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 16);
    let mut seed: u32 = 12345;
    let mut sentence = 0;
    while out.len() < bytes {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.push_str(words[(seed >> 16) as usize % words.len()]);
        sentence += 1;
        out.push_str(if sentence % 12 == 0 { ".\n" } else { " " });
    }
    out
}

fn email(from: &str, subject: &str, signal: &str, filler: &[&str], headers: &[(&str, &str)]) -> Message {
    let mut m = Message::new(Channel::Email, DedupKey::from_stored("timing".into()), DateTime::UNIX_EPOCH);
    m.sender.email = EmailAddress::parse(from).ok();
    m.subject = Some(subject.to_owned());
    m.text = format!("{signal}\n\n{}", prose(filler, 5_000 - signal.len()));
    m.headers = headers.iter().map(|(n, v)| Header { name: (*n).into(), value: (*v).into() }).collect();
    m
}

fn main() {
    let started = Instant::now();
    let rules = RuleSet::parse(include_str!("../../../rules/default.toml"), "rules/default.toml".as_ref())
        .unwrap_or_else(|e| panic!("{e}"));
    println!("compiled {} rules in {:?}", rules.rules().count(), started.elapsed());

    let received = [
        ("Received", "from mx.example.ru by mail.example.ru"),
        ("Message-ID", "<1@example.ru>"),
        ("X-Mailer", "Microsoft Outlook 16.0"),
    ];
    let cases = [
        (
            "russian inquiry",
            email(
                "ivan.petrov@zavod.example.ru",
                "Запрос КП на поставку",
                "Добрый день! Наше предприятие планирует закупку насосов. Просим направить коммерческое \
                 предложение с указанием сроков поставки и условий оплаты.",
                RUSSIAN_WORDS,
                &received,
            ),
        ),
        (
            "english newsletter",
            email(
                "news@shop.example.com",
                "This week: new arrivals and a webinar",
                "Join our webinar on Thursday. View this email in your browser.",
                ENGLISH_WORDS,
                &[("List-Unsubscribe", "<https://shop.example.com/u>"), ("Precedence", "bulk")],
            ),
        ),
        (
            "english spam",
            email(
                "winner@lottery.example.net",
                "YOU HAVE WON $1,000,000!!!",
                "Dear friend, act now and claim your prize. Click here to earn money from home. This is not \
                 spam. To be removed reply with REMOVE in the subject.",
                ENGLISH_WORDS,
                &received,
            ),
        ),
    ];

    // Other builds may share the machine, so time many short batches and
    // report the fastest (the uncontended cost) next to the median.
    let standing = SenderStanding::default();
    let (batches, per_batch) = (300, 50);
    for (name, message) in &cases {
        let verdict = rules.classify(message, &standing).verdict;
        let mut timings: Vec<_> = (0..batches)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..per_batch {
                    black_box(rules.classify(black_box(message), &standing));
                }
                started.elapsed() / per_batch
            })
            .collect();
        timings.sort();
        println!(
            "{name:>20}: {:<14} fastest {:>9.2?}, median {:>9.2?} per message ({} bytes of text)",
            verdict.as_str(),
            timings[0],
            timings[timings.len() / 2],
            message.text.len()
        );
    }
}

//! Loading, validation and condition semantics, on small hand-written files.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::DateTime;
use leadsift_core::{
    Attachment, CallInfo, Channel, Classifier, DedupKey, EmailAddress, Header, Message, MessengerHandle, PhoneNumber,
    SenderStanding, Verdict,
};
use proptest::prelude::*;

use super::*;

pub(crate) fn message(channel: Channel, subject: &str, text: &str) -> Message {
    let mut m = Message::new(channel, DedupKey::from_stored("test".into()), DateTime::UNIX_EPOCH);
    m.subject = (!subject.is_empty()).then(|| subject.to_owned());
    m.text = text.to_owned();
    m
}

pub(crate) fn email(from: &str, subject: &str, text: &str) -> Message {
    let mut m = message(Channel::Email, subject, text);
    m.sender.email = Some(EmailAddress::parse(from).unwrap());
    m
}

fn rules(text: &str) -> RuleSet {
    RuleSet::parse(text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<(usize, usize, String)> {
    let error = RuleSet::parse(text, Path::new("test.toml")).expect_err("file should be rejected");
    error.errors.into_iter().map(|e| (e.line, e.column, e.message)).collect()
}

fn fired(rules: &RuleSet, m: &Message) -> Vec<String> {
    let mut ids: Vec<String> = rules.evidence(m).reasons().iter().map(|r| r.rule.clone()).collect();
    ids.dedup();
    ids
}

const MINIMAL: &str = r#"
version = 1

[[rule]]
id = "NEWS"
description = "List-Unsubscribe"
header = "List-Unsubscribe"
score = { newsletter = 3.0, inquiry = -0.5 }

[[rule]]
id = "BANK_1C"
description = "1C exchange"
body = '(?m)^1CClientBankExchange'
decide = "bank_statement"
confidence = 0.99
"#;

#[test]
fn a_minimal_file_scores_and_decides() {
    let rules = rules(MINIMAL);
    assert_eq!(rules.version(), 1);
    assert_eq!(rules.scoring(), ScoringPolicy::default());

    let mut m = email("news@shop.example", "Sale", "hello");
    m.headers.push(Header { name: "list-unsubscribe".into(), value: "<mailto:u@shop.example>".into() });
    let evidence = rules.evidence(&m);
    assert_eq!(evidence.score(Verdict::Newsletter), 3.0);
    assert_eq!(evidence.score(Verdict::Inquiry), -0.5);
    assert_eq!(evidence.reasons().len(), 2);
    assert!(evidence.reasons().iter().all(|r| r.rule == "NEWS" && r.origin == ReasonOrigin::Rule));

    let m = email("a@b.example", "", "header\n1CClientBankExchange\nВерсияФормата=1.03");
    let evidence = rules.evidence(&m);
    assert_eq!(evidence.decided(), Some((Verdict::BankStatement, 0.99)));
    assert!(evidence.reasons()[0].decisive);
    let c = rules.classify(&m, &SenderStanding::default());
    assert_eq!((c.verdict, c.confidence), (Verdict::BankStatement, 0.99));
}

#[test]
fn a_rule_set_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<RuleSet>();
}

#[test]
fn rules_are_listed_with_their_effects() {
    let rules = rules(MINIMAL);
    let listed: Vec<_> = rules.rules().collect();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].id, listed[0].line), ("NEWS", 4));
    assert_eq!(listed[0].effect.to_string(), "inquiry -0.5, newsletter +3");
    assert_eq!(listed[1].effect.to_string(), "decides bank_statement (confidence 0.99)");
    assert_eq!(listed[1].description, "1C exchange");
}

#[test]
fn scoring_section_overrides_the_defaults() {
    let rules = rules("version = 1\n[scoring]\nthreshold = 6\nsteepness = 0.5\n");
    assert_eq!(rules.scoring(), ScoringPolicy { threshold: 6.0, steepness: 0.5 });
    assert_eq!(rules.rules().count(), 0);
}

/// Every kind of mistake at once; each must be reported with its own line.
#[test]
fn a_broken_file_reports_every_error_with_its_line() {
    let text = r#"version = 2
colour = "blue"

[scoring]
threshold = "high"

[lists]
bank_domains = ["sberbank.ru", "not a domain"]
spam_phrases = { file = "lists/does-not-exist.txt" }

[[rule]]
id = "BAD_REGEX"
description = "x"
body = '(unclosed'
score = { spam = 1 }

[[rule]]
id = "lower_case"
description = "x"
bodyy = 'typo'
subject = 'ok'
score = { spam = 1, nonsense = 2 }

[[rule]]
description = "no id"
header = "List-Id"
decide = "newsletter"

[[rule]]
id = "DUP"
description = "x"
phrases_in = "missing_list"
score = { spam = 1 }

[[rule]]
id = "DUP"
description = "x"
sender_domain_in = "bank_domains"
score = { spam = 1 }

[[rule]]
id = "NO_CONDITION"
description = "x"
score = { spam = 1 }

[[rule]]
id = "TWO_EFFECTS"
description = "x"
channel = ["email", "fax"]
score = { spam = 1 }
decide = "spam"

[[rule]]
id = "BROKEN_SYNTAX"
description = "x"
body = 'unterminated
score = { spam = 1 }
"#;
    let found = errors(text);
    let expect: &[(usize, &str)] = &[
        (1, "unsupported rules version 2: this leadsift reads version 1"),
        (2, "unknown top-level key `colour`"),
        (5, "`threshold` must be a number"),
        (8, "\"not a domain\" is not a domain name"),
        (9, "cannot read list file"),
        (14, "bad regex in `body`: unclosed group"),
        (18, "rule id \"lower_case\" must be upper-case letters, digits and `_`"),
        (20, "unknown key in a rule `bodyy`; did you mean `body`?"),
        (22, "unknown class \"nonsense\""),
        (24, "rule has no `id`"),
        (32, "unknown list \"missing_list\" in `phrases_in` (defined lists: bank_domains, spam_phrases)"),
        (35, "duplicate rule id DUP (first defined on line 29)"),
        (41, "rule NO_CONDITION has no condition"),
        (46, "rule TWO_EFFECTS has both `score` and `decide`"),
        (49, "unknown channel \"fax\""),
        (56, "invalid literal string"),
    ];
    for (line, needle) in expect {
        assert!(
            found.iter().any(|(l, _, m)| l == line && m.contains(needle)),
            "missing error on line {line} containing {needle:?}; got:\n{found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "unexpected extra errors:\n{found:#?}");
}

#[test]
fn errors_display_as_file_line_column() {
    let error = RuleSet::parse("version = 1\n[[rule]]\nid = \"A\"\n", Path::new("rules/x.toml")).unwrap_err();
    let shown = error.to_string();
    assert!(shown.starts_with("rules/x.toml:2:1: rule A has no `description`"), "{shown}");
    assert_eq!(shown.lines().count(), error.errors.len());
}

#[test]
fn a_missing_version_is_an_error() {
    let found = errors("[[rule]]\nid = \"A\"\ndescription = \"a\"\nheader = \"X\"\nscore = { spam = 1 }\n");
    assert_eq!(found, vec![(1, 1, "missing `version = 1` (the rules schema version)".to_owned())]);
}

#[test]
fn side_file_lists_load_relative_to_the_rules_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    std::fs::write(
        dir.path().join("lists/spam_phrases.txt"),
        "# phrases that smell of spam\n\nвывод в топ\n  купить базу*\nclick here\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("lists/vip.txt"), "boss@client.example\n+7 916 204-55-81\ntelegram:@IvanP\n")
        .unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(
        &path,
        r#"version = 1
[lists]
spam_phrases = { file = "lists/spam_phrases.txt" }
vip = { file = "lists/vip.txt" }

[[rule]]
id = "SPAM_PHRASE"
description = "spam phrase"
phrases_in = "spam_phrases"
score = { spam = 2 }

[[rule]]
id = "VIP"
description = "a known client"
sender_in = "vip"
score = { inquiry = 5 }
"#,
    )
    .unwrap();
    let rules = RuleSet::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules.origin(), path);
    assert_eq!(fired(&rules, &email("x@y.example", "", "Выведем: ВЫВОД В ТОП за неделю")), ["SPAM_PHRASE"]);
    assert_eq!(fired(&rules, &email("x@y.example", "Купить базу клиентов", "")), ["SPAM_PHRASE"]);
    assert!(fired(&rules, &email("x@y.example", "", "top")).is_empty());
    assert_eq!(fired(&rules, &email("Boss@Client.example", "", "")), ["VIP"]);
    let mut call = message(Channel::Call, "", "");
    call.sender.phone = Some(PhoneNumber::parse("89162045581", "RU").unwrap());
    assert_eq!(fired(&rules, &call), ["VIP"]);
    let mut chat = message(Channel::Messenger, "", "");
    chat.sender.handle = Some(MessengerHandle::parse("telegram:ivanp").unwrap());
    assert_eq!(fired(&rules, &chat), ["VIP"]);
}

#[test]
fn side_file_errors_point_into_the_side_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("domains.txt"), "# banks\nsberbank.ru\n\n   not a domain\n").unwrap();
    std::fs::write(dir.path().join("phrases.txt"), "ok phrase\nbad*phrase\n").unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(
        &path,
        r#"version = 1
[lists]
banks = { file = "domains.txt" }
words = { file = "phrases.txt" }
gone = { file = "nowhere.txt" }

[[rule]]
id = "BANK"
description = "bank"
sender_domain_in = "banks"
phrases_in = "words"
score = { bank_statement = 2 }

[[rule]]
id = "GONE"
description = "uses the unreadable list, which must not add a second error"
phrases_in = "gone"
score = { spam = 1 }
"#,
    )
    .unwrap();
    let error = RuleSet::load(&path).unwrap_err();
    let found: Vec<(String, usize, usize)> = error
        .errors
        .iter()
        .map(|e| (e.file.file_name().unwrap().to_string_lossy().into_owned(), e.line, e.column))
        .collect();
    assert_eq!(
        found,
        vec![("domains.txt".into(), 4, 4), ("phrases.txt".into(), 2, 1), ("rules.toml".into(), 5, 17)],
        "{error}"
    );
}

#[test]
fn loading_a_missing_or_binary_file_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let error = RuleSet::load(&dir.path().join("absent.toml")).unwrap_err();
    assert_eq!((error.errors[0].line, error.errors[0].column), (1, 1));
    assert!(error.errors[0].message.starts_with("cannot read rules file"));

    let path = dir.path().join("binary.toml");
    std::fs::write(&path, b"version = 1\nab\xff\n").unwrap();
    let error = RuleSet::load(&path).unwrap_err();
    assert_eq!((error.errors[0].line, error.errors[0].column), (2, 3), "{error}");
}

#[test]
fn every_condition_kind_is_checked() {
    let rules = rules(
        r#"version = 1
[lists]
banks = ["sberbank.ru"]

[[rule]]
id = "CHANNEL"
description = "d"
channel = ["call", "webform"]
score = { spam = 1 }

[[rule]]
id = "HEADER_MATCHES"
description = "d"
header_matches = { name = "Precedence", regex = '(?i)^bulk' }
score = { spam = 1 }

[[rule]]
id = "SUBJECT_ONLY"
description = "d"
subject = 'ЗАКАЗ'
score = { spam = 1 }

[[rule]]
id = "BODY_ONLY"
description = "d"
body = 'ЗАКАЗ'
score = { spam = 1 }

[[rule]]
id = "TEXT"
description = "d"
text = 'ЗАКАЗ'
score = { spam = 1 }

[[rule]]
id = "SENDER"
description = "d"
sender = '(?i)^ivan'
score = { spam = 1 }

[[rule]]
id = "RECIPIENT"
description = "d"
recipient = '^sales@'
score = { spam = 1 }

[[rule]]
id = "BANK_DOMAIN"
description = "d"
sender_domain_in = "banks"
score = { spam = 1 }

[[rule]]
id = "PDF"
description = "d"
attachment_type = '^application/pdf$'
attachment_name = '(?i)\.pdf$'
has_attachment = true
score = { spam = 1 }

[[rule]]
id = "MISSED_SHORT"
description = "d"
call_answered = false
call_duration_max = 10
score = { inquiry = 1 }

[[rule]]
id = "LONG_CALL"
description = "d"
call_duration_min = 60
score = { inquiry = 1 }

[[rule]]
id = "LINKS"
description = "d"
links_min = 2
score = { spam = 1 }

[[rule]]
id = "NOT_ANY"
description = "d"
channel = "email"
not = { subject = '(?i)^re:' }
any = [{ body = 'alpha' }, { phrases = ["бета*"] }]
score = { spam = 1 }

[[rule]]
id = "WORD_BOUNDARY"
description = "d"
body = '(?i)\bкп\b'
score = { inquiry = 1 }
"#,
    );
    assert_eq!(fired(&rules, &message(Channel::Webform, "", "")), ["CHANNEL"]);

    let mut m = email("ivan@sberbank.ru", "ЗАКАЗ", "");
    m.headers.push(Header { name: "Precedence".into(), value: "Bulk".into() });
    m.destination = Some("sales@our.example".into());
    assert_eq!(fired(&rules, &m), ["HEADER_MATCHES", "SUBJECT_ONLY", "TEXT", "SENDER", "RECIPIENT", "BANK_DOMAIN"]);
    assert_eq!(fired(&rules, &email("petr@online.sberbank.ru", "", "ЗАКАЗ")), ["BODY_ONLY", "TEXT", "BANK_DOMAIN"]);
    assert!(fired(&rules, &email("petr@notsberbank.ru", "", "заказ")).is_empty(), "regexes are case-sensitive");

    let mut m = email("a@b.example", "", "");
    m.attachments.push(Attachment { name: Some("Invoice.PDF".into()), mime_type: "application/pdf".into(), size: 1 });
    assert_eq!(fired(&rules, &m), ["PDF"]);
    m.attachments[0].mime_type = "image/png".into();
    assert!(fired(&rules, &m).is_empty());

    let mut call = message(Channel::Call, "", "");
    call.call = Some(CallInfo { duration_secs: 4, answered: false });
    assert_eq!(fired(&rules, &call), ["CHANNEL", "MISSED_SHORT"]);
    call.call = Some(CallInfo { duration_secs: 95, answered: true });
    assert_eq!(fired(&rules, &call), ["CHANNEL", "LONG_CALL"]);
    call.call = None;
    assert_eq!(fired(&rules, &call), ["CHANNEL"], "call conditions need call info");

    assert_eq!(fired(&rules, &email("a@b.example", "", "see https://a.example and www.b.example")), ["LINKS"]);
    assert!(fired(&rules, &email("a@b.example", "", "see https://a.example")).is_empty());

    assert_eq!(fired(&rules, &email("a@b.example", "Hello", "alpha")), ["NOT_ANY"]);
    assert_eq!(fired(&rules, &email("a@b.example", "Hello", "Бетатестеры нужны")), ["NOT_ANY"]);
    assert!(fired(&rules, &email("a@b.example", "Re: Hello", "alpha")).is_empty());
    assert!(fired(&rules, &email("a@b.example", "Hello", "gamma")).is_empty());

    assert_eq!(fired(&rules, &email("a@b.example", "", "Пришлите КП, пожалуйста")), ["WORD_BOUNDARY"]);
    assert!(fired(&rules, &email("a@b.example", "", "на КПП")).is_empty());
}

#[test]
fn the_same_pattern_is_compiled_once() {
    let rules = rules(
        r#"version = 1
[lists]
words = ["a", "b"]
[[rule]]
id = "ONE"
description = "d"
body = 'x+'
phrases_in = "words"
score = { spam = 1 }
[[rule]]
id = "TWO"
description = "d"
body = 'x+'
phrases_in = "words"
score = { spam = 1 }
"#,
    );
    assert_eq!(rules.inner.text.atom_count(), 2);
}

#[test]
fn only_the_scanned_prefix_of_a_huge_message_counts() {
    let rules = rules(
        "version = 1\n[[rule]]\nid = \"TAIL\"\ndescription = \"d\"\nphrases = [\"needle\"]\nscore = { spam = 1 }\n",
    );
    let mut text = "lorem ipsum dolor sit amet ".repeat(200_000);
    text.push_str("needle");
    assert!(text.len() > 5_000_000);
    let m = email("a@b.example", "", &text);
    let started = Instant::now();
    let evidence = rules.evidence(&m);
    let elapsed = started.elapsed();
    assert!(evidence.reasons().is_empty(), "text past the scan limit is ignored");
    assert!(elapsed < Duration::from_millis(100), "5 MB message took {elapsed:?}");

    let builtin = RuleSet::builtin();
    let started = Instant::now();
    let _ = builtin.classify(&m, &SenderStanding::default());
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(100), "5 MB message took {elapsed:?} with the built-in rules");
}

proptest! {
    #[test]
    fn any_text_classifies_without_panic_and_deterministically(
        subject in "\\PC{0,60}",
        text in "(\\PC|\n){0,400}",
        channel in prop::sample::select(Channel::ALL.to_vec()),
    ) {
        let rules = RuleSet::builtin();
        let m = message(channel, &subject, &text);
        let first = rules.evidence(&m);
        prop_assert_eq!(&first, &rules.evidence(&m));
        let c = rules.classify(&m, &SenderStanding::default());
        prop_assert!((0.0..=1.0).contains(&c.confidence));
    }

    #[test]
    fn any_rules_text_loads_or_fails_without_panic(text in "(\\PC|\n){0,300}") {
        let _ = RuleSet::parse(&text, Path::new("fuzz.toml"));
    }
}

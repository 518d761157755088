//! Cross-module tests: save/load, feedback and its guard, the built-in
//! model, and (ignored unless asked for) the shared corpora.

use std::path::PathBuf;
use std::sync::Arc;

use leadsift_core::{Channel, Classifier, SenderStanding, Verdict};
use leadsift_rules::RuleSet;

use crate::features::tests_support::message;
use crate::train::tests::{no_rules, small_settings, synthetic_corpus};
use crate::*;

fn trained() -> Model {
    train(&synthetic_corpus(), &[], &no_rules(), &small_settings(), &mut |_| {})
        .unwrap_or_else(|e| panic!("training failed: {e}"))
        .model
}

#[test]
fn save_and_load_round_trip_byte_identical() {
    let model = trained();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    model.save(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let loaded = Model::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.counts(), model.counts());
    assert_eq!(loaded.calibration(), model.calibration());
    assert_eq!(loaded.metadata(), model.metadata());
    assert!(model.linear().is_some());
    assert_eq!(loaded.linear(), model.linear());
    let again = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    loaded.save(again.path()).unwrap_or_else(|e| panic!("{e}"));
    for file in [model::MODEL_FILE, model::METADATA_FILE] {
        let a = std::fs::read(dir.path().join(file)).unwrap_or_default();
        let b = std::fs::read(again.path().join(file)).unwrap_or_default();
        assert!(!a.is_empty() && a == b, "{file} differs after a round trip");
    }
    let probe = message(Channel::Messenger, None, "Казино бонус, пиши в лс");
    assert_eq!(loaded.scores(&probe), model.scores(&probe));
}

#[test]
fn corrupt_model_files_are_errors_not_panics() {
    assert!(Model::from_bytes(b"not gzip", None).is_err());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert!(Model::load(dir.path()).is_err());
}

#[test]
fn feedback_changes_the_verdict_of_a_near_duplicate() {
    let model = trained();
    let rules = RuleSet::builtin();
    // A wholesale price-list mailing the synthetic model has never seen as junk.
    let text = "Оптовый прайс-лист на кабельную продукцию, скидки дилерам до 15%, отгрузка со склада в Подольске";
    let before = CombinedClassifier::new(rules.clone(), Arc::new(model.clone()));
    let probe = message(Channel::Email, Some("Прайс-лист ноябрь"), &format!("{text}. Звоните!"));
    assert_ne!(before.classify(&probe, &SenderStanding::default()).verdict, Verdict::Spam);

    let feedback: Vec<_> = (0..3)
        .map(|i| (message(Channel::Email, Some("Прайс-лист"), &format!("{text} (выпуск {i})")), Verdict::Spam))
        .collect();
    let updated = learn_from_feedback(&model, &feedback);
    let after = CombinedClassifier::new(rules, Arc::new(updated.clone()));
    let c = after.classify(&probe, &SenderStanding::default());
    assert_eq!(c.verdict, Verdict::Spam, "{c:?}");
    // The base model is untouched, and the update is exactly what a refit would learn.
    assert_eq!(before.classify(&probe, &SenderStanding::default()).verdict, Verdict::Inquiry);
    let refit = train(&synthetic_corpus(), &feedback, &no_rules(), &small_settings(), &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}"))
        .model;
    assert_eq!(refit.counts(), updated.counts());
    assert!(updated.linear().is_some());
    assert_eq!(refit.linear(), updated.linear());
}

#[test]
fn one_feedback_label_does_not_spread() {
    let model = trained();
    let spam = message(Channel::Messenger, None, "Редкие слова: квазикристаллы, флогистон, эфирные ветра");
    let updated = learn_from_feedback(
        &model,
        &[(spam, Verdict::Spam), (message(Channel::Call, None, "ошиблись номером"), Verdict::NonTarget)],
    );
    // The spam label joined an existing spam component instead of founding a tiny one.
    assert_eq!(updated.counts().components.len(), model.counts().components.len() + 1);
    assert!(updated.counts().components.iter().any(|c| c.name == "non_target:feedback" && c.examples == 1));
    let inquiry = message(Channel::Webform, Some("Вопрос"), "Здравствуйте, подскажите стоимость доставки и сроки");
    assert_eq!(updated.scores(&inquiry).predicted(), Verdict::Inquiry);
    // One non_target label is far below MIN_CLASS_EXAMPLES: the class stays silent.
    let non_target = model::SCORED_CLASSES.iter().position(|c| *c == Verdict::NonTarget).unwrap_or(3);
    assert!(!updated.scores(&inquiry).active[non_target]);
}

#[test]
fn a_model_with_more_false_positives_is_refused() {
    let corpus = synthetic_corpus();
    let model = trained();
    let old = validate(&model, &no_rules(), &corpus);
    assert!(accept_candidate(&old, &old).is_ok());

    // Poisoned feedback: real inquiries marked as spam, many times.
    let poison: Vec<_> = corpus
        .validation()
        .filter(|e| e.class == Verdict::Inquiry)
        .map(|e| (e.message.clone(), Verdict::Spam))
        .collect();
    assert!(!poison.is_empty());
    let candidate = learn_from_feedback(&model, &poison);
    let new = validate(&candidate, &no_rules(), &corpus);
    assert!(new.combined.ham_spam_fp_rate > old.combined.ham_spam_fp_rate, "{new:?}");
    let refusal = accept_candidate(&old, &new).err().unwrap_or_default();
    assert!(refusal.contains("false-positive rate rose"), "{refusal}");
}

#[test]
fn the_builtin_model_loads_and_classifies() {
    let started = std::time::Instant::now();
    let model = Model::builtin();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let metadata = model.metadata().unwrap_or_else(|| panic!("the built-in model has metadata"));
    assert!(metadata.validation.is_some());
    assert!(model.linear().is_some(), "the shipped model scores with its logistic regression");
    assert_eq!(metadata.algorithm, model.algorithm());
    let classifier = CombinedClassifier::new(RuleSet::builtin(), Arc::new(model.clone()));
    for (channel, text) in [
        (Channel::Email, ""),
        (Channel::Call, ""),
        (Channel::Messenger, "🔥🔥🔥"),
        (Channel::Webform, "Здравствуйте! Нужен расчёт стоимости доставки 20 тонн в Казань."),
    ] {
        let c = classifier.classify(&message(channel, None, text), &SenderStanding::default());
        assert!((0.0..=1.0).contains(&c.confidence));
    }
    // A huge mixed-script text with emoji and a binary attachment costs no
    // more than its capped prefix (the rules cap their input too).
    let mut huge = message(Channel::Email, Some("Счёт 💰 invoice"), &"Привет hello мир 🔥 world ".repeat(400_000));
    huge.attachments.push(leadsift_core::Attachment {
        name: Some("setup.exe".into()),
        mime_type: "application/x-msdownload".into(),
        size: 50_000_000,
    });
    let started = std::time::Instant::now();
    let c = classifier.classify(&huge, &SenderStanding::default());
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(c.reasons.iter().any(|r| r.rule.starts_with("model:")), "{c:?}");
}

/// The shared corpora, or `None` (a failure under `CI=true`).
fn shared_corpora() -> Option<PathBuf> {
    let root = std::env::var_os("LEADSIFT_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora"));
    if root.is_dir() {
        return Some(root);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the shared corpora are missing at {}: set LEADSIFT_CORPORA to the folder holding them",
        root.display()
    );
    None
}

#[test]
#[ignore = "needs ../shared/corpora; run with --ignored"]
fn corpora_load_with_the_documented_labels() {
    let Some(root) = shared_corpora() else { return };
    let corpus = Corpus::load_root(&root).unwrap_or_else(|e| panic!("{e}"));
    let count = |name: &str, class: &str| {
        corpus.stats.iter().find(|s| s.corpus == name).and_then(|s| s.per_class.get(class).copied()).unwrap_or(0)
    };
    assert!(count("spamassassin", "spam") > 450, "{:?}", corpus.stats);
    assert!(count("spamassassin", "newsletter") > 1500);
    assert!(count("enron", "inquiry") > 3000);
    assert!(count("markup", "newsletter") > 400);
    assert!(count("sms", "spam") > 600 && count("sms", "inquiry") > 4000);
    assert!(count("telegram_ru", "spam") > 7000);
    assert!(count("stankin", "inquiry") > 20_000);
    assert!(count("sberbank", "bank_statement") >= 3);
    let validation = corpus.validation().count() as f64 / corpus.examples.len() as f64;
    assert!((0.18..0.22).contains(&validation), "{validation}");
}

#[test]
#[ignore = "needs ../shared/corpora; run with --ignored"]
fn the_builtin_model_keeps_its_validation_figures() {
    let Some(root) = shared_corpora() else { return };
    let corpus = Corpus::load_root(&root).unwrap_or_else(|e| panic!("{e}"));
    let model = Model::builtin();
    let figures = validate(model, &RuleSet::builtin(), &corpus);
    let recorded = model.metadata().and_then(|m| m.validation.clone()).unwrap_or_else(|| panic!("no figures"));
    assert_eq!(figures.combined.confusion, recorded.combined.confusion);
    let budget = figures.rules_only.ham_spam_fp_rate.max(DEFAULT_MAX_HAM_SPAM_FP_RATE);
    assert!(figures.combined.ham_spam_fp_rate <= budget, "{}", figures.combined);
    // The model must help: more spam caught than by the rules, fewer inquiries junked than by the model alone.
    assert!(figures.combined.spam_f1() > figures.rules_only.spam_f1());
    assert!(figures.combined.inquiry_as_junk <= figures.model_only.inquiry_as_junk.max(20));
}

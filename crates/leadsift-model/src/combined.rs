//! Rules + model → one verdict.
//!
//! The combination is additive in the rules' own units: the rules' evidence
//! and the model's evidence (see [`crate::model::Calibration`]) are merged
//! and [`ScoringPolicy::decide`] with the rules file's scoring policy makes
//! the decision, so list standing, decisive rules, the threshold and the
//! confidence curve behave exactly as with rules alone. For each junk class
//! `c` the model adds `clamp(w · ln(p(c|x)/p(inquiry|x)) − b, −3, cap_c)`:
//! confident model opinions can decide a message on their own, and a
//! confident "this is a real message" pulls back a rule false positive —
//! unless a rule strong enough to decide on its own (score ≥ the threshold)
//! argued for that class: the model's doubt does not cancel it. `w` and `b`
//! are chosen per channel group (e-mail, short messages) on out-of-fold
//! predictions of the training side: the best macro F1 within the
//! ham→spam false-positive budget.

use std::sync::Arc;

use leadsift_core::{Classification, Classifier, Evidence, Message, ScoringPolicy, SenderStanding};
use leadsift_rules::RuleSet;

use crate::model::{Model, RulesView};

/// Anything that turns a message into evidence under a scoring policy: the
/// rules engine, or a handle that always yields the current rules.
pub trait EvidenceSource: Send + Sync {
    fn evidence(&self, message: &Message) -> Evidence;
    fn scoring(&self) -> ScoringPolicy;
}

impl EvidenceSource for RuleSet {
    fn evidence(&self, message: &Message) -> Evidence {
        RuleSet::evidence(self, message)
    }

    fn scoring(&self) -> ScoringPolicy {
        RuleSet::scoring(self)
    }
}

impl<T: EvidenceSource + ?Sized> EvidenceSource for Arc<T> {
    fn evidence(&self, message: &Message) -> Evidence {
        (**self).evidence(message)
    }

    fn scoring(&self) -> ScoringPolicy {
        (**self).scoring()
    }
}

/// The rules and the model, combined. Cheap to clone and share across threads.
#[derive(Debug, Clone)]
pub struct CombinedClassifier<R = RuleSet> {
    rules: R,
    model: Arc<Model>,
}

impl<R: EvidenceSource> CombinedClassifier<R> {
    pub fn new(rules: R, model: Arc<Model>) -> Self {
        Self { rules, model }
    }

    pub fn rules(&self) -> &R {
        &self.rules
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Rules evidence followed by the model's reasons. A message with no
    /// words at all (a call without a transcript, an empty form) gives the
    /// model nothing to read, so it gets no say: its prior for empty input
    /// would otherwise outvote rules that see what it cannot (call history).
    ///
    /// The model never takes points from a class that a rule strong enough
    /// to decide on its own argued for ([`protected_classes`]): its pull-back
    /// is for rules that merely hint.
    pub fn evidence(&self, message: &Message) -> Evidence {
        let mut evidence = self.rules.evidence(message);
        if has_words(message) {
            let view = RulesView::of(&evidence, self.rules.scoring().threshold);
            evidence.merge(self.model.evidence_beside(message, &view));
        }
        evidence
    }
}

impl<R: EvidenceSource> Classifier for CombinedClassifier<R> {
    fn classify(&self, message: &Message, standing: &SenderStanding) -> Classification {
        self.rules.scoring().decide(self.evidence(message), standing)
    }
}

/// Whether the message has anything for the model to read.
pub(crate) fn has_words(message: &Message) -> bool {
    let readable = |text: &str| text.chars().any(char::is_alphanumeric);
    readable(&message.text) || message.subject.as_deref().is_some_and(readable)
}

/// The model alone under the default scoring policy (for `eval` comparisons).
#[derive(Debug, Clone)]
pub struct ModelOnlyClassifier {
    pub model: Arc<Model>,
    pub policy: ScoringPolicy,
}

impl Classifier for ModelOnlyClassifier {
    fn classify(&self, message: &Message, standing: &SenderStanding) -> Classification {
        self.policy.decide(self.model.evidence(message), standing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::tests_support::message;
    use crate::model::{ChannelGroup, GroupCalibration, protected_classes};
    use crate::train::tests::{small_settings, synthetic_corpus};
    use chrono::Utc;
    use leadsift_core::{Channel, EntryOrigin, ListEntry, ListKind, ReasonOrigin, SourceRef, Verdict};
    use leadsift_core::{Evidence, ScoringPolicy};

    fn trained() -> Arc<Model> {
        let outcome =
            crate::train::train(&synthetic_corpus(), &[], &RuleSet::builtin(), &small_settings(), &mut |_| {})
                .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(outcome.model)
    }

    fn spammy() -> Message {
        let mut m = message(
            Channel::Messenger,
            None,
            "Казино бонус! Заработок без вложений, пиши в лс 💰🔥 http://casino.example",
        );
        m.sender.email = leadsift_core::EmailAddress::parse("friend@partner.example").ok();
        m
    }

    #[test]
    fn a_message_without_words_is_left_to_the_rules() {
        let classifier = CombinedClassifier::new(RuleSet::builtin(), trained());
        let mut call = message(Channel::Call, None, "");
        call.call = Some(leadsift_core::CallInfo { duration_secs: 3, answered: false });
        let reasons = classifier.evidence(&call).reasons().iter().map(|r| r.rule.clone()).collect::<Vec<_>>();
        assert!(!reasons.iter().any(|r| r.starts_with("model:")), "{reasons:?}");
        let spoken = message(Channel::Call, None, "Хочу заказать монтаж фасада");
        let reasons = classifier.evidence(&spoken).reasons().iter().map(|r| r.rule.clone()).collect::<Vec<_>>();
        assert!(reasons.iter().any(|r| r.starts_with("model:")), "{reasons:?}");
    }

    /// Rules that give `spam` the listed scores, one reason each.
    struct SpamRules(Vec<f64>);

    impl EvidenceSource for SpamRules {
        fn evidence(&self, message: &Message) -> Evidence {
            ClassRules(self.0.iter().map(|score| (Verdict::Spam, *score)).collect()).evidence(message)
        }

        fn scoring(&self) -> ScoringPolicy {
            ScoringPolicy::default()
        }
    }

    /// Rules that give each listed class its score, one reason each.
    struct ClassRules(Vec<(Verdict, f64)>);

    impl EvidenceSource for ClassRules {
        fn evidence(&self, _: &Message) -> Evidence {
            let mut evidence = Evidence::default();
            for (i, (class, score)) in self.0.iter().enumerate() {
                let reason = leadsift_core::Reason {
                    rule: format!("{}_RULE_{i}", class.as_str().to_uppercase()),
                    description: "test rule".into(),
                    origin: ReasonOrigin::Rule,
                    class: None,
                    score: 0.0,
                    decisive: false,
                };
                evidence.add_score(reason, *class, *score);
            }
            evidence
        }

        fn scoring(&self) -> ScoringPolicy {
            ScoringPolicy::default()
        }
    }

    fn model_reason(c: &Classification, class: Verdict) -> leadsift_core::Reason {
        let found = c.reasons.iter().find(|r| r.origin == ReasonOrigin::Model && r.class == Some(class));
        found.cloned().unwrap_or_else(|| panic!("no model reason for {class}: {c:?}"))
    }

    #[test]
    fn the_model_cannot_lift_a_class_past_one_it_has_not_learned() {
        let model = trained();
        assert!(!model.scores(&spammy()).active[1], "the synthetic model has no bank statements");
        let standing = SenderStanding::default();
        // Without rules the model calls it spam: the test can fail.
        assert_eq!(
            CombinedClassifier::new(ClassRules(vec![]), Arc::clone(&model)).classify(&spammy(), &standing).verdict,
            Verdict::Spam
        );

        // Two bank rules (5 points) decide a bank statement; the model's spam stops just under them.
        let bank = CombinedClassifier::new(
            ClassRules(vec![(Verdict::BankStatement, 3.0), (Verdict::BankStatement, 2.0)]),
            Arc::clone(&model),
        );
        let c = bank.classify(&spammy(), &standing);
        assert_eq!(c.verdict, Verdict::BankStatement, "{c:?}");
        let spam = model_reason(&c, Verdict::Spam);
        assert!((spam.score - 4.99).abs() < 1e-9, "{spam:?}");
        assert!(spam.description.contains("has not learned"), "{}", spam.description);

        // Bank points under the threshold are not a verdict: the model decides.
        let hint = CombinedClassifier::new(ClassRules(vec![(Verdict::BankStatement, 3.0)]), Arc::clone(&model));
        assert_eq!(hint.classify(&spammy(), &standing).verdict, Verdict::Spam);
    }

    #[test]
    fn a_request_the_rules_see_keeps_the_model_alone_under_the_threshold() {
        // A model sure enough to outvote a request: three times the synthetic model's points.
        let mut sure = (*trained()).clone();
        let calibration = *sure.calibration();
        let short = calibration.group(ChannelGroup::ShortMessages);
        let tripled = GroupCalibration { weight: short.weight * 3.0, ..short };
        sure.set_calibration(calibration.with_group(ChannelGroup::ShortMessages, tripled));
        let model = Arc::new(sure);
        assert!(model.evidence(&spammy()).score(Verdict::Spam) > 4.0 + 2.5, "the test needs a sure model");
        let standing = SenderStanding::default();
        let request = CombinedClassifier::new(ClassRules(vec![(Verdict::Inquiry, 2.5)]), Arc::clone(&model));
        let c = request.classify(&spammy(), &standing);
        assert_eq!(c.verdict, Verdict::Inquiry, "{c:?}");
        let spam = model_reason(&c, Verdict::Spam);
        assert!((spam.score - (4.0 + 2.5 - 0.01)).abs() < 1e-9, "{spam:?}");
        assert!(spam.description.contains("the rules see a request"), "{}", spam.description);
        assert!(c.confidence < 0.51, "an unsure lead: {c:?}");

        // One spam rule beside the request: the model may decide again.
        let seconded = CombinedClassifier::new(
            ClassRules(vec![(Verdict::Inquiry, 2.5), (Verdict::Spam, 1.0)]),
            Arc::clone(&model),
        );
        assert_eq!(seconded.classify(&spammy(), &standing).verdict, Verdict::Spam);

        // A polite opener (1 point) is not a request.
        let opener = CombinedClassifier::new(ClassRules(vec![(Verdict::Inquiry, 1.0)]), Arc::clone(&model));
        let c = opener.classify(&spammy(), &standing);
        assert_eq!(c.verdict, Verdict::Spam, "{c:?}");
        assert!(!model_reason(&c, Verdict::Spam).description.contains("held"), "{c:?}");
    }

    #[test]
    fn the_model_cannot_cancel_a_rule_strong_enough_on_its_own() {
        let model = trained();
        let inquiry = message(Channel::Email, Some("Вопрос"), "Здравствуйте, подскажите стоимость доставки и сроки");
        let doubt = model.evidence(&inquiry).score(Verdict::Spam);
        assert!(doubt <= -2.0, "the model must doubt spam here for the test to mean anything: {doubt}");
        let standing = SenderStanding::default();

        // One rule at the threshold (4) or above decides on its own: the model's doubt is not applied.
        let strong = CombinedClassifier::new(SpamRules(vec![4.5]), Arc::clone(&model));
        let evidence = strong.evidence(&inquiry);
        assert_eq!(evidence.score(Verdict::Spam), 4.5, "{:?}", evidence.reasons());
        assert_eq!(strong.classify(&inquiry, &standing).verdict, Verdict::Spam);

        // The same points from two hints are pulled back: a rule false positive the model can fix.
        let hints = CombinedClassifier::new(SpamRules(vec![2.5, 2.0]), Arc::clone(&model));
        assert!(hints.evidence(&inquiry).score(Verdict::Spam) < 4.5 - 2.0);
        assert_eq!(hints.classify(&inquiry, &standing).verdict, Verdict::Inquiry);

        // The model may still add to a protected class.
        let spam = CombinedClassifier::new(SpamRules(vec![4.5]), Arc::clone(&model));
        assert!(spam.evidence(&spammy()).score(Verdict::Spam) > 4.5);
    }

    #[test]
    fn protected_classes_are_those_of_rules_at_the_threshold() {
        let rules = SpamRules(vec![1.0, 4.0]).evidence(&spammy());
        assert_eq!(protected_classes(&rules, 4.0), [true, false, false, false]);
        assert_eq!(protected_classes(&rules, 4.5), [false; 4]);
        assert_eq!(protected_classes(&Evidence::default(), 4.0), [false; 4]);
    }

    #[test]
    fn model_reasons_are_visible_and_spam_is_caught() {
        let classifier = CombinedClassifier::new(RuleSet::builtin(), trained());
        let c = classifier.classify(&spammy(), &SenderStanding::default());
        assert_eq!(c.verdict, Verdict::Spam, "{c:?}");
        let reason = c.reasons.iter().find(|r| r.origin == ReasonOrigin::Model).unwrap_or_else(|| panic!("{c:?}"));
        assert_eq!(reason.rule, "model:default");
        assert!(reason.description.starts_with("model: spam "), "{}", reason.description);
    }

    #[test]
    fn an_allowlisted_sender_never_becomes_spam() {
        let classifier = CombinedClassifier::new(RuleSet::builtin(), trained());
        let allowed = ListEntry {
            id: 1,
            list: ListKind::Allowlist,
            target: SourceRef::guess("friend@partner.example", "RU").unwrap_or_else(|e| panic!("{e}")),
            reason: "partner".into(),
            origin: EntryOrigin::Admin,
            created_at: Utc::now(),
            created_by: "admin".into(),
            expires_at: None,
        };
        let standing = SenderStanding { blocked: None, allowed: Some(allowed) };
        let c = classifier.classify(&spammy(), &standing);
        assert_ne!(c.verdict, Verdict::Spam, "{c:?}");
        assert!(c.reasons.iter().any(|r| r.origin == ReasonOrigin::Allowlist));
    }
}

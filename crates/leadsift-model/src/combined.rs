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

use crate::model::{Model, protected_classes};

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
            let protected = protected_classes(&evidence, self.rules.scoring().threshold);
            evidence.merge(self.model.evidence_beside(message, protected));
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
        fn evidence(&self, _: &Message) -> Evidence {
            let mut evidence = Evidence::default();
            for (i, score) in self.0.iter().enumerate() {
                let reason = leadsift_core::Reason {
                    rule: format!("SPAM_RULE_{i}"),
                    description: "test rule".into(),
                    origin: ReasonOrigin::Rule,
                    class: None,
                    score: 0.0,
                    decisive: false,
                };
                evidence.add_score(reason, Verdict::Spam, *score);
            }
            evidence
        }

        fn scoring(&self) -> ScoringPolicy {
            ScoringPolicy::default()
        }
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

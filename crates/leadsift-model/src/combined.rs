//! Rules + model → one verdict.
//!
//! The combination is additive in the rules' own units: the rules' evidence
//! and the model's evidence (see [`crate::model::Calibration`]) are merged
//! and [`ScoringPolicy::decide`] with the rules file's scoring policy makes
//! the decision, so list standing, decisive rules, the threshold and the
//! confidence curve behave exactly as with rules alone. For each junk class
//! `c` the model adds `clamp(w · ln(p(c|x)/p(inquiry|x)), −3, cap_c)`:
//! confident model opinions can decide a message on their own, a confident
//! "this is a real message" pulls a rule false positive back, and the
//! weight `w` is the one that gave the best validation macro F1 without more
//! ham→spam false positives than the rules alone.

use std::sync::Arc;

use leadsift_core::{Classification, Classifier, Evidence, Message, ScoringPolicy, SenderStanding};
use leadsift_rules::RuleSet;

use crate::model::Model;

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
    pub fn evidence(&self, message: &Message) -> Evidence {
        let mut evidence = self.rules.evidence(message);
        if has_words(message) {
            evidence.merge(self.model.evidence(message));
        }
        evidence
    }
}

impl<R: EvidenceSource> Classifier for CombinedClassifier<R> {
    fn classify(&self, message: &Message, standing: &SenderStanding) -> Classification {
        self.rules.scoring().decide(self.evidence(message), standing)
    }
}

fn has_words(message: &Message) -> bool {
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

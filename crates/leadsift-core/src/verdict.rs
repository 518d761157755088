//! Verdicts, the evidence behind them, and the one place evidence becomes a verdict.
//!
//! Every classifier (the rules engine, the ML model, their combination)
//! produces [`Evidence`]: per-class scores plus the reasons that contributed
//! them. [`ScoringPolicy::decide`] turns evidence and the sender's list
//! standing into a [`Classification`]. Keeping that step in one pure function
//! means blacklist short-circuits, allowlist protection and confidence
//! calibration behave the same whatever produced the scores.

use serde::{Deserialize, Serialize};

use crate::lists::SenderStanding;

/// The five triage classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A real client inquiry: becomes a lead.
    Inquiry,
    Spam,
    /// Bank statements and bank notifications.
    BankStatement,
    /// Mailings, digests, webinars, price-list mailings.
    Newsletter,
    /// Wrong numbers, misdirected personal messages, job applications.
    NonTarget,
}

crate::names::wire_names!(Verdict, "class" {
    Inquiry => "inquiry",
    Spam => "spam",
    BankStatement => "bank_statement",
    Newsletter => "newsletter",
    NonTarget => "non_target",
});

impl Verdict {
    /// Position in [`Verdict::ALL`], for per-class arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What produced a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonOrigin {
    Rule,
    Model,
    Blacklist,
    Allowlist,
}

/// One contribution to a verdict, shown to admins and managers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Rule id, `model:<name>`, `blacklist` or `allowlist`.
    pub rule: String,
    pub description: String,
    pub origin: ReasonOrigin,
    /// The class this reason pushed towards, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Verdict>,
    /// Score added to `class` (0 for decisive reasons).
    #[serde(default)]
    pub score: f64,
    /// True when this reason decided the class outright.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decisive: bool,
}

/// Per-class scores and the reasons behind them, before a decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    scores: [f64; 5],
    reasons: Vec<Reason>,
    decided: Option<(Verdict, f64)>,
}

impl Evidence {
    /// Records a scoring reason and adds its score.
    pub fn add_score(&mut self, reason: Reason, class: Verdict, score: f64) {
        self.scores[class.index()] += score;
        self.reasons.push(Reason { class: Some(class), score, ..reason });
    }

    /// Records a decisive reason. The first decisive reason wins; later ones
    /// are still listed so admins see every rule that fired.
    pub fn decide(&mut self, reason: Reason, class: Verdict, confidence: f64) {
        if self.decided.is_none() {
            self.decided = Some((class, confidence.clamp(0.0, 1.0)));
        }
        self.reasons.push(Reason { class: Some(class), score: 0.0, decisive: true, ..reason });
    }

    pub fn score(&self, class: Verdict) -> f64 {
        self.scores[class.index()]
    }

    /// Every class's score, in [`Verdict::ALL`] order.
    pub fn scores(&self) -> [f64; 5] {
        self.scores
    }

    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
    }

    pub fn decided(&self) -> Option<(Verdict, f64)> {
        self.decided
    }

    /// Appends another classifier's evidence (used to combine rules and model).
    pub fn merge(&mut self, other: Evidence) {
        for class in Verdict::ALL {
            self.scores[class.index()] += other.scores[class.index()];
        }
        if self.decided.is_none() {
            self.decided = other.decided;
        }
        self.reasons.extend(other.reasons);
    }
}

/// The classifier's answer for one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub verdict: Verdict,
    /// Probability-like confidence in `verdict`, 0..=1.
    pub confidence: f64,
    pub reasons: Vec<Reason>,
}

/// How scores become a verdict and a confidence.
///
/// A non-inquiry class `c` has margin `score(c) - score(inquiry)`; its
/// probability is `sigmoid(steepness * (margin - threshold))`, so a class
/// reaches 0.5 exactly at the threshold (as in SpamAssassin's required
/// score). The class with the highest probability wins if that is at least
/// 0.5; otherwise the message is an inquiry with confidence `1 - max p`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoringPolicy {
    pub threshold: f64,
    pub steepness: f64,
}

impl Default for ScoringPolicy {
    fn default() -> Self {
        Self { threshold: 4.0, steepness: 1.0 }
    }
}

impl ScoringPolicy {
    /// Probability of each non-inquiry class given the scores.
    pub fn class_probability(&self, evidence: &Evidence, class: Verdict) -> f64 {
        let margin = evidence.score(class) - evidence.score(Verdict::Inquiry);
        sigmoid(self.steepness * (margin - self.threshold))
    }

    /// The single decision point: list standing first, then decisive rules,
    /// then calibrated scores. An allowlisted sender never ends as spam.
    pub fn decide(&self, mut evidence: Evidence, standing: &SenderStanding) -> Classification {
        if let Some(allowed) = &standing.allowed {
            evidence.reasons.push(Reason {
                rule: "allowlist".into(),
                description: format!("allowlisted: {} ({})", allowed.target, allowed.reason),
                origin: ReasonOrigin::Allowlist,
                class: None,
                score: 0.0,
                decisive: false,
            });
        } else if let Some(blocked) = &standing.blocked {
            let mut reasons = vec![Reason {
                rule: "blacklist".into(),
                description: format!("blacklisted: {} ({})", blocked.target, blocked.reason),
                origin: ReasonOrigin::Blacklist,
                class: Some(Verdict::Spam),
                score: 0.0,
                decisive: true,
            }];
            reasons.extend(evidence.reasons);
            return Classification { verdict: Verdict::Spam, confidence: 1.0, reasons };
        }
        let spam_forbidden = standing.allowed.is_some();
        let (verdict, confidence) = self.decide_scores(&evidence.scores, evidence.decided, spam_forbidden);
        Classification { verdict, confidence, reasons: evidence.reasons }
    }

    /// The decision of [`Self::decide`] after list standing, from the scores
    /// and the first decisive reason alone: what `decide` uses, exposed so a
    /// calibration search can try thousands of score variants without
    /// building evidence for each.
    pub fn decide_scores(
        &self,
        scores: &[f64; 5],
        decided: Option<(Verdict, f64)>,
        spam_forbidden: bool,
    ) -> (Verdict, f64) {
        if let Some((class, confidence)) = decided
            && !(spam_forbidden && class == Verdict::Spam)
        {
            return (class, confidence);
        }
        let inquiry = scores[Verdict::Inquiry.index()];
        let best = Verdict::ALL
            .into_iter()
            .filter(|class| *class != Verdict::Inquiry && !(spam_forbidden && *class == Verdict::Spam))
            .map(|class| (class, sigmoid(self.steepness * (scores[class.index()] - inquiry - self.threshold))))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((class, p)) if p >= 0.5 => (class, p),
            Some((_, p)) => (Verdict::Inquiry, 1.0 - p),
            None => (Verdict::Inquiry, 1.0),
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SourceRef;
    use crate::lists::{EntryOrigin, ListEntry, ListKind};
    use chrono::Utc;

    fn reason(rule: &str) -> Reason {
        Reason {
            rule: rule.into(),
            description: rule.into(),
            origin: ReasonOrigin::Rule,
            class: None,
            score: 0.0,
            decisive: false,
        }
    }

    fn entry(list: ListKind) -> ListEntry {
        ListEntry {
            id: 1,
            list,
            target: SourceRef::guess("x@spam.example", "RU").unwrap(),
            reason: "test".into(),
            origin: EntryOrigin::Admin,
            created_at: Utc::now(),
            created_by: "admin".into(),
            expires_at: None,
        }
    }

    #[test]
    fn no_evidence_is_a_confident_inquiry() {
        let c = ScoringPolicy::default().decide(Evidence::default(), &SenderStanding::default());
        assert_eq!(c.verdict, Verdict::Inquiry);
        assert!(c.confidence > 0.98, "{}", c.confidence);
    }

    #[test]
    fn threshold_is_the_half_way_point() {
        let policy = ScoringPolicy::default();
        let mut e = Evidence::default();
        e.add_score(reason("A"), Verdict::Spam, 4.0);
        let c = policy.decide(e.clone(), &SenderStanding::default());
        assert_eq!(c.verdict, Verdict::Spam);
        assert!((c.confidence - 0.5).abs() < 1e-9);
        // Inquiry evidence pulls the margin back under the threshold.
        e.add_score(reason("B"), Verdict::Inquiry, 1.0);
        let c = policy.decide(e, &SenderStanding::default());
        assert_eq!(c.verdict, Verdict::Inquiry);
        assert_eq!(c.reasons.len(), 2);
    }

    #[test]
    fn blacklist_short_circuits_and_allowlist_protects() {
        let policy = ScoringPolicy::default();
        let blocked = SenderStanding { blocked: Some(entry(ListKind::Blacklist)), allowed: None };
        let c = policy.decide(Evidence::default(), &blocked);
        assert_eq!((c.verdict, c.confidence), (Verdict::Spam, 1.0));
        assert!(c.reasons[0].description.starts_with("blacklisted: email:x@spam.example"));

        let mut e = Evidence::default();
        e.decide(reason("SPAMMY"), Verdict::Spam, 1.0);
        e.add_score(reason("SPAM_SCORE"), Verdict::Spam, 20.0);
        let allowed =
            SenderStanding { blocked: Some(entry(ListKind::Blacklist)), allowed: Some(entry(ListKind::Allowlist)) };
        let c = policy.decide(e, &allowed);
        assert_ne!(c.verdict, Verdict::Spam);
        assert!(c.reasons.iter().any(|r| r.origin == ReasonOrigin::Allowlist));
    }

    #[test]
    fn first_decisive_reason_wins() {
        let mut e = Evidence::default();
        e.decide(reason("BANK"), Verdict::BankStatement, 0.99);
        e.decide(reason("NEWS"), Verdict::Newsletter, 1.0);
        let c = ScoringPolicy::default().decide(e, &SenderStanding::default());
        assert_eq!(c.verdict, Verdict::BankStatement);
        assert_eq!(c.reasons.len(), 2);
    }
}

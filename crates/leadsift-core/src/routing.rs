//! Where a classified message goes: a lead in some stage, or stored only.
//!
//! The rule of the house: a real inquiry lost to a filter is lost money, so
//! any verdict below the review confidence becomes a `contact_client` lead
//! flagged for review, with the reason it is unsure.

use serde::{Deserialize, Serialize};

use crate::lead::{JunkReason, LeadStage};
use crate::verdict::{Classification, Verdict};

/// Routing thresholds (configurable).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoutingPolicy {
    /// Verdicts with lower confidence become review leads.
    pub review_below: f64,
    /// Spam verdicts at or above this confidence count towards blacklisting the sender.
    pub auto_blacklist_min: f64,
    /// A sender is blacklisted automatically once this many of their
    /// messages were confident spam and none was anything else. One spam
    /// verdict is never enough on its own: a feed or a long-standing
    /// correspondent with one spam-looking message must not lose every
    /// later message to the blacklist.
    pub auto_blacklist_after: u32,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        Self { review_below: 0.75, auto_blacklist_min: 0.9, auto_blacklist_after: 2 }
    }
}

/// What the store does with a classified message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Route {
    /// Open or attach to a lead.
    Lead {
        stage: LeadStage,
        junk_reason: Option<JunkReason>,
        needs_review: bool,
        review_note: Option<String>,
        /// Blacklist the sender's identities once they have this many
        /// confident spam messages (this one included) and no other kind.
        blacklist_after: Option<u32>,
    },
    /// Keep the message (bank statements, newsletters), no lead.
    StoreOnly,
}

impl Route {
    pub fn creates_lead(&self) -> bool {
        matches!(self, Route::Lead { .. })
    }
}

impl RoutingPolicy {
    pub fn route(&self, classification: &Classification) -> Route {
        let confident = classification.confidence >= self.review_below;
        let lead = |stage, junk_reason, blacklist_after| Route::Lead {
            stage,
            junk_reason,
            needs_review: false,
            review_note: None,
            blacklist_after,
        };
        if !confident {
            return Route::Lead {
                stage: LeadStage::ContactClient,
                junk_reason: None,
                needs_review: true,
                review_note: Some(format!(
                    "unsure: {} with confidence {:.2} (below {:.2}); check and move it",
                    classification.verdict, classification.confidence, self.review_below
                )),
                blacklist_after: None,
            };
        }
        match classification.verdict {
            Verdict::Inquiry => lead(LeadStage::ContactClient, None, None),
            Verdict::Spam => {
                let blacklist_after =
                    (classification.confidence >= self.auto_blacklist_min).then_some(self.auto_blacklist_after.max(1));
                lead(LeadStage::Junk, Some(JunkReason::Spam), blacklist_after)
            }
            Verdict::NonTarget => lead(LeadStage::Junk, Some(JunkReason::NonTarget), None),
            Verdict::BankStatement | Verdict::Newsletter => Route::StoreOnly,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(verdict: Verdict, confidence: f64) -> Classification {
        Classification { verdict, confidence, reasons: vec![] }
    }

    #[test]
    fn confident_verdicts_route_by_class() {
        let policy = RoutingPolicy::default();
        assert!(matches!(
            policy.route(&classified(Verdict::Inquiry, 0.99)),
            Route::Lead { stage: LeadStage::ContactClient, needs_review: false, .. }
        ));
        assert!(matches!(
            policy.route(&classified(Verdict::Spam, 0.95)),
            Route::Lead { stage: LeadStage::Junk, junk_reason: Some(JunkReason::Spam), blacklist_after: Some(2), .. }
        ));
        assert!(matches!(
            policy.route(&classified(Verdict::Spam, 0.8)),
            Route::Lead { stage: LeadStage::Junk, blacklist_after: None, .. }
        ));
        assert!(matches!(
            policy.route(&classified(Verdict::NonTarget, 0.9)),
            Route::Lead { junk_reason: Some(JunkReason::NonTarget), blacklist_after: None, .. }
        ));
        assert_eq!(policy.route(&classified(Verdict::Newsletter, 0.9)), Route::StoreOnly);
        assert_eq!(policy.route(&classified(Verdict::BankStatement, 1.0)), Route::StoreOnly);
    }

    #[test]
    fn unsure_verdicts_become_review_leads_never_junk() {
        let policy = RoutingPolicy::default();
        for verdict in Verdict::ALL {
            match policy.route(&classified(verdict, 0.6)) {
                Route::Lead { stage, needs_review, review_note, blacklist_after, .. } => {
                    assert_eq!(stage, LeadStage::ContactClient);
                    assert!(needs_review && blacklist_after.is_none());
                    assert!(review_note.unwrap().contains(verdict.as_str()));
                }
                Route::StoreOnly => panic!("{verdict} at 0.6 was not made a lead"),
            }
        }
    }
}

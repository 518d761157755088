//! Managers' corrections as labels for the model, and the model versions
//! learned from them.
//!
//! Feedback is recorded where the correction happens (a lead moved to junk
//! or restored, `leadsift learn`, a message moved between IMAP folders) and
//! kept forever: the model is always rebuilt from the shipped model plus
//! every label, so one bad label can be corrected by labelling the same
//! message again (the latest label of a message wins).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::verdict::Verdict;

/// Where a label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackOrigin {
    /// A manager moved the message's lead to junk, or restored it from junk.
    LeadMove,
    /// `leadsift learn ID --as CLASS` (or the same action in the web UI).
    Learn,
    /// A person moved the mail into a configured IMAP folder.
    ImapFolder,
}

crate::names::wire_names!(FeedbackOrigin, "feedback origin" {
    LeadMove => "lead_move",
    Learn => "learn",
    ImapFolder => "imap_folder",
});

/// A label to record for a stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewFeedback {
    pub message_id: i64,
    pub label: Verdict,
    pub origin: FeedbackOrigin,
    pub actor: String,
}

/// A recorded label with the message it labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub id: i64,
    pub message_id: i64,
    pub label: Verdict,
    pub origin: FeedbackOrigin,
    pub actor: String,
    pub created_at: DateTime<Utc>,
    pub message: Message,
}

/// One attempt to update the model from feedback, accepted or refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub id: i64,
    /// Model name (from its metadata).
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The highest feedback id the attempt learned from.
    pub feedback_upto: i64,
    /// Labels learned from (after "latest label per message wins").
    pub feedback_used: i64,
    pub accepted: bool,
    /// Why it was accepted or refused, for the log and `leadsift model history`.
    pub note: String,
    /// Validation figures of the old and the new model (JSON).
    pub figures: String,
}

/// A model version to record; `model` holds the serialised model when accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModelVersion {
    pub name: String,
    pub feedback_upto: i64,
    pub feedback_used: i64,
    pub accepted: bool,
    pub note: String,
    pub figures: String,
    pub model: Option<Vec<u8>>,
}

/// The label a stage move teaches: junk as spam or non-target says what the
/// messages were; taking a lead out of junk says they were a real inquiry.
/// Junk as duplicate or "other" says nothing about the text.
pub fn label_for_move(
    from: crate::lead::LeadStage,
    to: crate::lead::LeadStage,
    junk_reason: Option<crate::lead::JunkReason>,
) -> Option<Verdict> {
    use crate::lead::{JunkReason, LeadStage};
    match (from, to, junk_reason) {
        (LeadStage::Junk, LeadStage::Junk, _) => None,
        (_, LeadStage::Junk, Some(JunkReason::Spam)) => Some(Verdict::Spam),
        (_, LeadStage::Junk, Some(JunkReason::NonTarget)) => Some(Verdict::NonTarget),
        (_, LeadStage::Junk, _) => None,
        (LeadStage::Junk, _, _) => Some(Verdict::Inquiry),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::{JunkReason, LeadStage};

    #[test]
    fn moves_to_and_out_of_junk_are_labels_and_others_are_not() {
        let spam = label_for_move(LeadStage::ContactClient, LeadStage::Junk, Some(JunkReason::Spam));
        assert_eq!(spam, Some(Verdict::Spam));
        let non_target = label_for_move(LeadStage::Qualification, LeadStage::Junk, Some(JunkReason::NonTarget));
        assert_eq!(non_target, Some(Verdict::NonTarget));
        assert_eq!(label_for_move(LeadStage::ContactClient, LeadStage::Junk, Some(JunkReason::Duplicate)), None);
        assert_eq!(label_for_move(LeadStage::Junk, LeadStage::ContactClient, None), Some(Verdict::Inquiry));
        assert_eq!(label_for_move(LeadStage::ContactClient, LeadStage::Qualification, None), None);
        assert_eq!(label_for_move(LeadStage::Junk, LeadStage::Junk, Some(JunkReason::Spam)), None);
        assert_eq!("imap_folder".parse::<FeedbackOrigin>().ok(), Some(FeedbackOrigin::ImapFolder));
    }
}

//! Leads, their sales stages and contacts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identity::SourceRef;
use crate::message::Channel;
use crate::verdict::{Reason, Verdict};

/// The sales stages of a lead. There is deliberately no "no answer" stage:
/// a missed call is a lead to call back, i.e. `ContactClient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadStage {
    /// "Связаться с клиентом": the first stage, an order to act.
    ContactClient,
    /// "Квалификация".
    Qualification,
    /// "Подготовить и отправить КП".
    Offer,
    /// Turned into contact + company + deal.
    Converted,
    /// Closed as junk, with a [`JunkReason`].
    Junk,
}

crate::names::wire_names!(LeadStage, "stage" {
    ContactClient => "contact_client",
    Qualification => "qualification",
    Offer => "offer",
    Converted => "converted",
    Junk => "junk",
});

impl LeadStage {
    /// Stages in which a lead is still being worked; a repeat inquiry is attached to such a lead.
    pub const OPEN: [LeadStage; 3] = [Self::ContactClient, Self::Qualification, Self::Offer];

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }

    /// Default (Russian) display name; teams override these in config.
    pub fn default_display_name(self) -> &'static str {
        match self {
            Self::ContactClient => "Связаться с клиентом",
            Self::Qualification => "Квалификация",
            Self::Offer => "Подготовить и отправить КП",
            Self::Converted => "Сконвертирован",
            Self::Junk => "Некачественный лид",
        }
    }
}

/// Why a lead was closed as junk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JunkReason {
    Spam,
    NonTarget,
    Duplicate,
    Other,
}

crate::names::wire_names!(JunkReason, "junk reason" {
    Spam => "spam",
    NonTarget => "non_target",
    Duplicate => "duplicate",
    Other => "other",
});

/// A lead as listed on the board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub id: i64,
    pub stage: LeadStage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub junk_reason: Option<JunkReason>,
    pub needs_review: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_note: Option<String>,
    pub contact_id: Option<i64>,
    /// True when the contact had an earlier non-junk lead.
    pub returning_client: bool,
    pub channel: Channel,
    pub title: String,
    /// The verdict of the message that opened the lead.
    pub verdict: Verdict,
    pub confidence: f64,
    pub reasons: Vec<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    pub message_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub identities: Vec<SourceRef>,
}

/// One recorded stage move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageChange {
    pub lead_id: i64,
    pub from: Option<LeadStage>,
    pub to: LeadStage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub junk_reason: Option<JunkReason>,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// A manager's or admin's request to move a lead.
#[derive(Debug, Clone, PartialEq)]
pub struct StageMove {
    pub lead_id: i64,
    pub to: LeadStage,
    /// Required when `to` is `Junk`.
    pub junk_reason: Option<JunkReason>,
    pub actor: String,
    pub note: Option<String>,
}

/// Filter for listing leads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadFilter {
    pub stage: Option<LeadStage>,
    pub needs_review: Option<bool>,
    pub limit: Option<u32>,
}

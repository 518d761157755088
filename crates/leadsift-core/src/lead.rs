//! Leads, their sales stages and contacts.

use std::fmt;
use std::str::FromStr;

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

impl LeadStage {
    pub const ALL: [LeadStage; 5] =
        [Self::ContactClient, Self::Qualification, Self::Offer, Self::Converted, Self::Junk];
    /// Stages in which a lead is still being worked; a repeat inquiry is attached to such a lead.
    pub const OPEN: [LeadStage; 3] = [Self::ContactClient, Self::Qualification, Self::Offer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContactClient => "contact_client",
            Self::Qualification => "qualification",
            Self::Offer => "offer",
            Self::Converted => "converted",
            Self::Junk => "junk",
        }
    }

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

impl fmt::Display for LeadStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LeadStage {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| {
            format!("unknown stage {raw:?} (expected contact_client, qualification, offer, converted or junk)")
        })
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

impl JunkReason {
    pub const ALL: [JunkReason; 4] = [Self::Spam, Self::NonTarget, Self::Duplicate, Self::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spam => "spam",
            Self::NonTarget => "non_target",
            Self::Duplicate => "duplicate",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for JunkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JunkReason {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| format!("unknown junk reason {raw:?} (expected spam, non_target, duplicate or other)"))
    }
}

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

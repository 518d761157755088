//! Who may do what in the web UI and the API: people, their roles, and
//! their sessions.
//!
//! Roles are cumulative: a manager can do everything a viewer can, an
//! admin everything a manager can. Passwords are never in this crate: the
//! store keeps an argon2 hash the web adapter made, and sessions are
//! stored by the SHA-256 of their token, so a leaked database holds no
//! usable credential.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Dashboards and reports.
    Viewer,
    /// Viewer, plus working leads: stage moves, junk and restore, black- and allowlisting senders.
    Manager,
    /// Manager, plus rules, lists management and settings.
    Admin,
}

crate::names::wire_names!(Role, "role" {
    Viewer => "viewer",
    Manager => "manager",
    Admin => "admin",
});

impl Role {
    /// True when this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// A person who can log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A logged-in session, as found by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    /// The token forms must echo (CSRF protection); random per session.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A valid user name: 1–64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 64
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_cumulative() {
        assert!(Role::Admin.allows(Role::Manager) && Role::Admin.allows(Role::Viewer));
        assert!(Role::Manager.allows(Role::Viewer) && !Role::Manager.allows(Role::Admin));
        assert!(!Role::Viewer.allows(Role::Manager));
        assert_eq!("manager".parse::<Role>().unwrap(), Role::Manager);
    }

    #[test]
    fn usernames_are_plain() {
        assert!(valid_username("anna") && valid_username("boris.k@firm.ru") && valid_username("Анна"));
        assert!(!valid_username("") && !valid_username("a b") && !valid_username("<script>"));
    }
}

//! People who log in and their sessions (migration 0007). Inherent methods
//! of [`SqlStore`]: only the web adapter calls them. Passwords arrive here
//! already hashed; session tokens arrive as their SHA-256.

use chrono::{DateTime, Utc};
use leadsift_core::{Role, Session, StoreError, User};
use sqlx::any::AnyRow;

use crate::rows::{col, parsed};
use crate::{SqlStore, from_millis, millis, query_error};

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: col(row, "id")?,
        username: col(row, "username")?,
        role: parsed(row, "role")?,
        disabled: col::<i64>(row, "disabled")? != 0,
        created_at: from_millis(col(row, "created_at")?),
    })
}

impl SqlStore {
    /// Adds a user; `Invalid` if the name is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        at: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let operation = "creating a user";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
            .bind(username.to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error(operation))?;
        if taken.is_some() {
            return Err(StoreError::Invalid(format!("user {username:?} exists already")));
        }
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, $4, $4) RETURNING id, username, role, disabled, created_at",
        )
        .bind(username.to_owned())
        .bind(password_hash.to_owned())
        .bind(role.as_str())
        .bind(millis(at))
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error(operation))?;
        let user = user_from_row(&row)?;
        tx.commit().await.map_err(query_error(operation))?;
        Ok(user)
    }

    /// Changes a user's password hash, role or disabled flag; a change of
    /// password, role or access ends the user's sessions.
    pub async fn update_user(
        &self,
        username: &str,
        password_hash: Option<&str>,
        role: Option<Role>,
        disabled: Option<bool>,
        at: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let operation = "updating a user";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        let row = sqlx::query(
            "UPDATE users SET password_hash = COALESCE($1, password_hash), role = COALESCE($2, role), \
             disabled = COALESCE($3, disabled), updated_at = $4 WHERE username = $5 \
             RETURNING id, username, role, disabled, created_at",
        )
        .bind(password_hash.map(str::to_owned))
        .bind(role.map(|r| r.as_str()))
        .bind(disabled.map(i64::from))
        .bind(millis(at))
        .bind(username.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error(operation))?;
        let Some(row) = row else { return Err(StoreError::NotFound(format!("user {username:?}"))) };
        let user = user_from_row(&row)?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.id)
            .execute(&mut *tx)
            .await
            .map_err(query_error(operation))?;
        tx.commit().await.map_err(query_error(operation))?;
        Ok(user)
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT id, username, role, disabled, created_at FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("listing users"))?;
        rows.iter().map(user_from_row).collect()
    }

    /// A user and their password hash, for checking a login.
    pub async fn user_credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, role, disabled, created_at, password_hash FROM users WHERE username = $1",
        )
        .bind(username.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("reading a user"))?;
        row.map(|row| Ok((user_from_row(&row)?, col(&row, "password_hash")?))).transpose()
    }

    /// Starts a session; expired sessions are swept at the same time.
    pub async fn create_session(
        &self,
        token_sha256: &str,
        user_id: i64,
        csrf_token: &str,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let operation = "starting a session";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(millis(at))
            .execute(&mut *tx)
            .await
            .map_err(query_error(operation))?;
        sqlx::query(
            "INSERT INTO sessions (token_sha256, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_sha256.to_owned())
        .bind(user_id)
        .bind(csrf_token.to_owned())
        .bind(millis(at))
        .bind(millis(expires_at))
        .execute(&mut *tx)
        .await
        .map_err(query_error(operation))?;
        tx.commit().await.map_err(query_error(operation))?;
        Ok(())
    }

    /// The live session with this token hash, if any: not expired, its user not disabled.
    pub async fn session(&self, token_sha256: &str, at: DateTime<Utc>) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.role, u.disabled, u.created_at, s.csrf_token, s.expires_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_sha256 = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_sha256.to_owned())
        .bind(millis(at))
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("reading a session"))?;
        row.map(|row| {
            Ok(Session {
                user: user_from_row(&row)?,
                csrf_token: col(&row, "csrf_token")?,
                expires_at: from_millis(col(&row, "expires_at")?),
            })
        })
        .transpose()
    }

    pub async fn end_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        let operation = "ending a session";
        let (mut tx, _write_gate) = self.begin_write().await.map_err(query_error(operation))?;
        sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(token_sha256.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(query_error(operation))?;
        tx.commit().await.map_err(query_error(operation))?;
        Ok(())
    }
}

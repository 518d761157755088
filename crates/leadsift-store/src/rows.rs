//! Decoding helpers shared by the query modules.

use std::str::FromStr;

use leadsift_core::StoreError;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Reads a column, naming it in the error.
pub(crate) fn col<T>(row: &AnyRow, name: &'static str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name).map_err(|e| StoreError::Corrupt { what: name, detail: e.to_string() })
}

/// Reads a text column and parses it into a domain enum.
pub(crate) fn parsed<T>(row: &AnyRow, name: &'static str) -> Result<T, StoreError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let raw: String = col(row, name)?;
    raw.parse().map_err(|e: T::Err| StoreError::Corrupt { what: name, detail: e.to_string() })
}

/// Like [`parsed`] for a nullable column.
pub(crate) fn parsed_opt<T>(row: &AnyRow, name: &'static str) -> Result<Option<T>, StoreError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = col(row, name)?;
    raw.map(|r| r.parse().map_err(|e: T::Err| StoreError::Corrupt { what: name, detail: e.to_string() })).transpose()
}

/// Reads a JSON text column.
pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, name: &'static str) -> Result<T, StoreError> {
    let raw: String = col(row, name)?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt { what: name, detail: e.to_string() })
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("cannot encode as JSON: {e}")))
}

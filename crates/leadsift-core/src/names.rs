//! One spelling per domain value: the wire names domain enums use in JSON,
//! SQL, the CLI, config files and metrics labels.

/// A name that is not one of an enum's wire names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {raw:?} (expected {})", expected.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub raw: String,
    pub expected: &'static [&'static str],
}

/// Implements `ALL`, `as_str`, `Display` and `FromStr` for a fieldless enum
/// from its variants' wire names.
macro_rules! wire_names {
    ($ty:ident, $what:literal { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: [$ty; [$($name),+].len()] = [$(Self::$variant),+];
            const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::names::UnknownName;

            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                Self::ALL.into_iter().find(|v| v.as_str() == raw).ok_or_else(|| $crate::names::UnknownName {
                    what: $what,
                    raw: raw.to_owned(),
                    expected: Self::NAMES,
                })
            }
        }
    };
}
pub(crate) use wire_names;

#[cfg(test)]
mod tests {
    use crate::{Channel, LeadStage, Verdict};

    #[test]
    fn names_round_trip_and_errors_list_the_choices() {
        for verdict in Verdict::ALL {
            assert_eq!(verdict.as_str().parse::<Verdict>().unwrap(), verdict);
        }
        assert_eq!("contact_client".parse::<LeadStage>().unwrap(), LeadStage::ContactClient);
        let error = "fax".parse::<Channel>().unwrap_err().to_string();
        assert_eq!(error, "unknown channel \"fax\" (expected email, call, messenger, webform)");
    }
}

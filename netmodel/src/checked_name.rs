//! [`checked_name!`]: the conversions every checked-string newtype of the crate has
//! ([`crate::IfName`], [`crate::NetworkName`]), written once.

/// Implements, for a `struct $name(String)` with a `$name::new(impl Into<String>) ->
/// Result<$name, ValidationError>` constructor: `as_str`, `into_string`, `TryFrom<String>`,
/// `TryFrom<&str>`, `FromStr`, `From<$name> for String`, `Display`, `AsRef<str>`,
/// `Borrow<str>`, `Deref<Target = str>` and comparison with `str` and `&str`. Every way in goes
/// through `new`, so no unchecked value can be built.
macro_rules! checked_name {
    ($name:ident) => {
        impl $name {
            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name as a `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::validation::ValidationError;

            fn try_from(name: String) -> Result<$name, Self::Error> {
                $name::new(name)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::validation::ValidationError;

            fn try_from(name: &str) -> Result<$name, Self::Error> {
                $name::new(name)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::validation::ValidationError;

            fn from_str(name: &str) -> Result<$name, Self::Err> {
                $name::new(name)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

pub(crate) use checked_name;

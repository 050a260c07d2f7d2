//! Enums stored as text: one declaration gives the variants, their names
//! in the table and on the wire, and the conversions both ways.

/// Declares an enum whose variants are stored as (and serialised to) the
/// given names, with `name()` and `TryFrom<String>`.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            // A `tt`, not a `literal`: utoipa's derive reads `rename` only
            // from a bare string token, and documented the Rust names.
            $( $(#[$vmeta:meta])* $variant:ident = $text:tt, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every variant.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Its name in the table, the API and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::JobsError;

            fn try_from(name: String) -> Result<Self, Self::Error> {
                match name.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::JobsError::Corrupt(format!(
                        "unknown {} {name:?}",
                        stringify!($name)
                    ))),
                }
            }
        }
    };
}

pub(crate) use text_enum;

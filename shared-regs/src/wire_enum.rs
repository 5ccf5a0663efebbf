//! `wire_enum!`: a fieldless enum stored as an integer on the wire or on disk, with its
//! decoder written once instead of a hand-kept `match` per enum.

/// Declares a `#[repr(int)]` enum and `fn $decode(value) -> Option<Self>`, plus `ALL`
/// (every variant in declaration order), so a value no variant has decodes to `None`.
/// The enum must derive `Clone` and `Copy` (the decoder copies out of `ALL`).
///
/// ```
/// shared_regs::wire_enum! {
///     /// A colour.
///     #[derive(Clone, Copy, Debug, PartialEq, Eq)]
///     pub enum Colour: u8, from_u8 {
///         /// Red.
///         Red = 1,
///         /// Green.
///         Green = 2,
///     }
/// }
/// assert_eq!(Colour::from_u8(2), Some(Colour::Green));
/// assert_eq!(Colour::from_u8(3), None);
/// assert_eq!(Colour::ALL, &[Colour::Red, Colour::Green]);
/// ```
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ident, $decode:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $value:expr),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr($repr)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant = $value),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Decodes a stored value; `None` for a value no variant has.
            pub fn $decode(value: $repr) -> Option<Self> {
                Self::ALL.iter().copied().find(|variant| *variant as $repr == value)
            }
        }
    };
}

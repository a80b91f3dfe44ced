//! Tenants: one MSP each. Every other object belongs to exactly one tenant.
use chrono::{DateTime, Utc};

use super::error::{FieldViolation, Result, Violations};
use super::money::Currency;
use super::text;

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub currency: Currency,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
    /// The colours of its customers' cost portal (white label).
    pub branding: Branding,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub currency: Currency,
    pub time_zone: String,
}

impl NewTenant {
    pub fn parse(name: &str, currency: &str, time_zone: &str) -> Result<Self> {
        let mut v = Violations::new();
        let name = v.check(text::display_name("name", name, text::NAME_MAX));
        let currency = v.check(Currency::parse("currency", currency));
        let time_zone = v.check(text::time_zone("time_zone", time_zone));
        v.into_result()?;
        Ok(NewTenant {
            name: name.expect("checked"),
            currency: currency.expect("checked"),
            time_zone: time_zone.expect("checked"),
        })
    }
}

/// An sRGB colour, kept as "#rrggbb" (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Color([u8; 3]);

impl Color {
    /// "#rrggbb" or "#rgb", either case; anything else (names, rgb(), alpha) is refused so the
    /// value can go into a style sheet as it is.
    pub fn parse(field: &str, value: &str) -> std::result::Result<Color, FieldViolation> {
        let bad = || {
            FieldViolation::new(
                field,
                format!(
                    "{value:?} is not a hex colour (\"#rrggbb\" or \"#rgb\", e.g. \"#1f5f8b\")"
                ),
            )
        };
        let hex = value.strip_prefix('#').ok_or_else(bad)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let digit = |i: usize| u8::from_str_radix(&hex[i..=i], 16).map_err(|_| bad());
        match hex.len() {
            6 => {
                let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
                Ok(Color([byte(0)?, byte(2)?, byte(4)?]))
            }
            3 => Ok(Color([digit(0)? * 17, digit(1)? * 17, digit(2)? * 17])),
            _ => Err(bad()),
        }
    }

    /// A colour stored by [`Color::hex`].
    pub fn from_stored(value: &str) -> Result<Color> {
        Color::parse("stored colour", value)
            .map_err(|v| super::error::Error::Internal(v.to_string()))
    }

    /// "#rrggbb".
    pub fn hex(self) -> String {
        let [r, g, b] = self.0;
        format!("#{r:02x}{g:02x}{b:02x}")
    }

    /// WCAG relative luminance (0 black to 1 white).
    fn luminance(self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let [r, g, b] = self.0;
        0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    }

    /// Black or white, whichever contrasts more with this colour: the text drawn on it.
    pub fn text_on(self) -> Color {
        // Contrast with white (1.05 / (L + 0.05)) against black ((L + 0.05) / 0.05).
        let l = self.luminance();
        if 1.05 / (l + 0.05) >= (l + 0.05) / 0.05 {
            Color([255, 255, 255])
        } else {
            Color([0, 0, 0])
        }
    }
}

/// The portal's colours when a tenant chose none.
pub const DEFAULT_PRIMARY: Color = Color([0x1f, 0x5f, 0x8b]);
pub const DEFAULT_ACCENT: Color = Color([0xd9, 0x82, 0x1e]);

/// A tenant's brand colours for the portal; None: the portal's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Branding {
    /// The header, navigation and chart bars.
    pub primary: Option<Color>,
    /// Links, highlights and the current page's marker.
    pub accent: Option<Color>,
}

impl Branding {
    /// Branding from a request: each colour "#rrggbb" or "#rgb", or empty for the default.
    pub fn parse(
        primary_field: &str,
        primary: &str,
        accent_field: &str,
        accent: &str,
    ) -> Result<Branding> {
        let mut v = Violations::new();
        let mut colour = |field: &str, value: &str| {
            if value.is_empty() {
                None
            } else {
                v.check(Color::parse(field, value))
            }
        };
        let branding = Branding {
            primary: colour(primary_field, primary),
            accent: colour(accent_field, accent),
        };
        v.into_result()?;
        Ok(branding)
    }

    pub fn primary_or_default(&self) -> Color {
        self.primary.unwrap_or(DEFAULT_PRIMARY)
    }

    pub fn accent_or_default(&self) -> Color {
        self.accent.unwrap_or(DEFAULT_ACCENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_hex_and_kept_in_lower_case() {
        assert_eq!(Color::parse("c", "#1F5F8B").unwrap().hex(), "#1f5f8b");
        assert_eq!(Color::parse("c", "#abc").unwrap().hex(), "#aabbcc");
        for bad in [
            "1f5f8b",
            "#1f5f8",
            "#1f5f8bff",
            "red",
            "#ggg",
            "#12345é",
            "",
            "#",
        ] {
            let e = Color::parse("branding.primary_color", bad).unwrap_err();
            assert_eq!(e.field, "branding.primary_color", "{bad}");
        }
    }

    #[test]
    fn text_on_a_colour_is_black_or_white_by_contrast() {
        let c = |s| Color::parse("c", s).unwrap();
        assert_eq!(c("#1f5f8b").text_on().hex(), "#ffffff");
        assert_eq!(c("#ffd400").text_on().hex(), "#000000");
        assert_eq!(c("#000000").text_on().hex(), "#ffffff");
    }

    #[test]
    fn branding_names_every_bad_field() {
        let e = Branding::parse(
            "branding.primary_color",
            "blue",
            "branding.accent_color",
            "#12",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("branding.primary_color"), "{text}");
        assert!(text.contains("branding.accent_color"), "{text}");
        let empty = Branding::parse("p", "", "a", "").unwrap();
        assert_eq!(empty, Branding::default());
        assert_eq!(empty.primary_or_default(), DEFAULT_PRIMARY);
    }
}

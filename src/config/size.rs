//! Byte sizes in the config: a whole number of bytes (`67108864`) or a number with a
//! binary unit, or none for bytes (`"64 MiB"`, `"512KiB"`, `"1 GiB"`, `"4096 B"`).

use toml::{Spanned, Value};

use crate::diag::Diagnostics;

/// A size as written: a number or a string with a unit (anything else is reported by
/// [`parse_size`] with the line it is on).
pub(super) type RawSize = Value;

const UNITS: [(&str, u64); 4] = [("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)];

/// The size in bytes, at least `min`; an error names the key, the line and what to
/// write.
pub(super) fn parse_size(
    raw: &Spanned<RawSize>,
    what: &str,
    min: u64,
    diags: &mut Diagnostics,
) -> Option<u64> {
    let bytes = match raw.get_ref() {
        Value::Integer(n) => u64::try_from(*n).ok(),
        Value::String(text) => with_unit(text),
        _ => None,
    };
    let Some(bytes) = bytes else {
        diags.error(
            raw.span(),
            format!(
                "{what} is not a size: write bytes (67108864) or e.g. \"64 MiB\", \"512 KiB\", \"1 GiB\""
            ),
        );
        return None;
    };
    if bytes < min {
        diags.error(
            raw.span(),
            format!(
                "{what} is {bytes} bytes, below the least it can be, {}",
                show(min)
            ),
        );
        return None;
    }
    Some(bytes)
}

fn with_unit(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let unit = match unit.trim() {
        "" => "B",
        unit => unit,
    };
    let (_, scale) = UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(unit))?;
    number.checked_mul(*scale)
}

/// A size as the config writes it, in the largest unit that divides it.
pub(super) fn show(bytes: u64) -> String {
    let (name, scale) = UNITS
        .iter()
        .rev()
        .find(|(_, scale)| bytes.is_multiple_of(*scale))
        .unwrap_or(&UNITS[0]);
    format!("\"{} {name}\"", bytes / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units() {
        let table: [(&str, Option<u64>); 9] = [
            ("64 MiB", Some(64 << 20)),
            ("64MiB", Some(64 << 20)),
            ("512 kib", Some(512 << 10)),
            ("1 GiB", Some(1 << 30)),
            ("4096 B", Some(4096)),
            ("4096", Some(4096)),
            ("64 MB", None),
            ("-1 MiB", None),
            ("99999999999999 GiB", None),
        ];
        for (text, expected) in table {
            assert_eq!(with_unit(text), expected, "{text}");
        }
        assert_eq!(show(64 << 20), "\"64 MiB\"");
        assert_eq!(show(1000), "\"1000 B\"");
    }
}

//! Amounts of dollars: whole nano-dollars in a `u64`, read exactly from their decimal text and
//! shown as dollars only for people.

/// Nano-dollars in a dollar.
pub const NANO_PER_USD: u64 = 1_000_000_000;
/// The largest amount a variable may give, in dollars: far above any sane budget, and small
/// enough that sums of a day's charges cannot overflow.
pub const MAX_USD: u64 = 1_000_000_000;

/// A decimal amount of dollars (`0.5`, `12`, `0.000000001`) as nano-USD, exactly; `None`
/// for anything else (negative, exponent, more than 9 decimals, above `MAX_USD`).
pub fn parse_usd(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 || text.ends_with('.') {
        return None;
    }
    let whole: u64 = whole.parse().ok().filter(|usd| *usd <= MAX_USD)?;
    let fraction: u64 = format!("{fraction:0<9}").parse().ok()?;
    let nano = whole.checked_mul(NANO_PER_USD)?.checked_add(fraction)?;
    (nano <= MAX_USD * NANO_PER_USD).then_some(nano)
}

/// Nano-USD as dollars and cents for people (`8.00`), rounded half up. Integer arithmetic: f64
/// formatting would add ~14 KB to the wasm.
pub fn dollars_and_cents(nano: u64) -> String {
    let cents = nano / 10_000_000 + u64::from(nano % 10_000_000 >= 5_000_000);
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Nano-USD as a JSON number of dollars, for people and dashboards (never for arithmetic).
pub fn usd(nano: u64) -> f64 {
    nano as f64 / NANO_PER_USD as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_and_cents_round_half_up() {
        assert_eq!(dollars_and_cents(0), "0.00");
        assert_eq!(dollars_and_cents(8 * NANO_PER_USD), "8.00");
        assert_eq!(dollars_and_cents(12_344_999_999), "12.34");
        assert_eq!(dollars_and_cents(12_345_000_000), "12.35");
        assert_eq!(dollars_and_cents(4_999_999), "0.00");
        assert_eq!(dollars_and_cents(u64::MAX), "18446744073.71");
    }
}

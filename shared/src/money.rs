//! Money is an integer number of micro-dollars (1 USD = 1 000 000 µ$), never a binary float.
//!
//! Prices are "USD per million tokens" and are kept as micro-dollars per million tokens, so a
//! price of `2.5` is `2_500_000`. The cost of a request is then
//! `(prompt × input_price + completion × output_price) / 1 000 000` µ$, rounded half up once,
//! at the end, in 128-bit arithmetic so no intermediate product can overflow.

use thiserror::Error;

/// Micro-dollars per dollar.
pub const MICROS_PER_USD: i64 = 1_000_000;
/// The largest price we accept: 1 000 000 USD per million tokens. Guards against typos.
pub const MAX_PRICE_MICROS: i64 = 1_000_000 * MICROS_PER_USD;

/// Why a decimal amount was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("must be a non-negative decimal number such as 2.5")]
    NotADecimal,
    #[error("has more than 6 decimal places")]
    TooPrecise,
    #[error("is larger than 1000000")]
    TooLarge,
}

/// Parses a non-negative decimal USD amount ("2.5", "0.15", "10") into micro-dollars exactly.
pub fn parse_usd(s: &str) -> Result<i64, MoneyError> {
    let s = s.trim();
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(MoneyError::NotADecimal);
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::NotADecimal);
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 6 {
        return Err(MoneyError::TooPrecise);
    }
    let int = int.trim_start_matches('0');
    if int.len() > 7 {
        return Err(MoneyError::TooLarge);
    }
    let whole: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| MoneyError::NotADecimal)?
    };
    let mut micros: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        micros += i64::from(b - b'0') * 10_i64.pow(5 - i as u32);
    }
    let total = whole * MICROS_PER_USD + micros;
    if total > MAX_PRICE_MICROS {
        return Err(MoneyError::TooLarge);
    }
    Ok(total)
}

/// Parses a JSON number or string holding a USD amount. serde_json keeps the shortest decimal
/// form of a float, so `2.5` round-trips as the text "2.5" and is then parsed exactly.
pub fn parse_usd_json(v: &serde_json::Value) -> Result<i64, MoneyError> {
    match v {
        serde_json::Value::Number(n) => parse_usd(&n.to_string()),
        serde_json::Value::String(s) => parse_usd(s),
        _ => Err(MoneyError::NotADecimal),
    }
}

/// Formats micro-dollars as a decimal USD string with trailing zeros trimmed: `2500000` → "2.5".
pub fn format_usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let whole = m / MICROS_PER_USD as u64;
    let frac = m % MICROS_PER_USD as u64;
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let frac = format!("{frac:06}");
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

/// Cost in micro-dollars of a request, from token counts and prices in µ$ per million tokens.
/// Rounded half up once, so a request is never billed less than its exact cost minus half a µ$.
pub fn cost_micros(
    prompt_tokens: u64,
    completion_tokens: u64,
    input_price_micros_per_mtok: i64,
    output_price_micros_per_mtok: i64,
) -> i64 {
    let exact_pico = i128::from(prompt_tokens) * i128::from(input_price_micros_per_mtok)
        + i128::from(completion_tokens) * i128::from(output_price_micros_per_mtok);
    let rounded = (exact_pico + 500_000) / 1_000_000;
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// Like [`cost_micros`], with the part of the prompt read from the provider's prompt cache
/// (`cache_read_tokens`, included in `prompt_tokens`) priced at `cached_input_price`.
pub fn cost_micros_with_cache(
    prompt_tokens: u64,
    cache_read_tokens: u64,
    completion_tokens: u64,
    input_price_micros_per_mtok: i64,
    cached_input_price_micros_per_mtok: i64,
    output_price_micros_per_mtok: i64,
) -> i64 {
    let cached = cache_read_tokens.min(prompt_tokens);
    let exact_pico = i128::from(prompt_tokens - cached) * i128::from(input_price_micros_per_mtok)
        + i128::from(cached) * i128::from(cached_input_price_micros_per_mtok)
        + i128::from(completion_tokens) * i128::from(output_price_micros_per_mtok);
    let rounded = (exact_pico + 500_000) / 1_000_000;
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_exactly() {
        let check = |s: &str, want: Result<i64, MoneyError>| assert_eq!(parse_usd(s), want, "{s}");
        check("2.5", Ok(2_500_000));
        check("0.15", Ok(150_000));
        check("10", Ok(10_000_000));
        check(".5", Ok(500_000));
        check("0.000001", Ok(1));
        check("1.2300000", Ok(1_230_000));
        check("0.0000001", Err(MoneyError::TooPrecise));
        check("-1", Err(MoneyError::NotADecimal));
        check("1e3", Err(MoneyError::NotADecimal));
        check("", Err(MoneyError::NotADecimal));
        check(".", Err(MoneyError::NotADecimal));
        check("1000001", Err(MoneyError::TooLarge));
    }

    #[test]
    fn json_floats_parse_exactly() {
        assert_eq!(parse_usd_json(&serde_json::json!(0.1)), Ok(100_000));
        assert_eq!(parse_usd_json(&serde_json::json!(2.5)), Ok(2_500_000));
        assert_eq!(parse_usd_json(&serde_json::json!("3")), Ok(3_000_000));
        assert!(parse_usd_json(&serde_json::json!(null)).is_err());
    }

    #[test]
    fn formats_round_trip() {
        for m in [0, 1, 150_000, 2_500_000, 10_000_000, 123_456_789] {
            assert_eq!(parse_usd(&format_usd(m)), Ok(m));
        }
        assert_eq!(format_usd(25), "0.000025");
    }

    #[test]
    fn cost_is_exact_integer_math() {
        // 1000 prompt tokens at $2.50/M and 500 completion tokens at $10/M = $0.0025 + $0.005.
        assert_eq!(cost_micros(1000, 500, 2_500_000, 10_000_000), 7_500);
        // 3 tokens at $0.15/M = 0.45 µ$ → rounds to 0; 4 tokens = 0.6 µ$ → 1.
        assert_eq!(cost_micros(3, 0, 150_000, 0), 0);
        assert_eq!(cost_micros(4, 0, 150_000, 0), 1);
        // 1000 prompt tokens of which 800 cached at $0.25/M instead of $2.50/M.
        assert_eq!(
            cost_micros_with_cache(1000, 800, 0, 2_500_000, 250_000, 0),
            200 * 2_500_000 / 1_000_000 + 800 * 250_000 / 1_000_000
        );
        assert_eq!(
            cost_micros_with_cache(1000, 0, 500, 2_500_000, 250_000, 10_000_000),
            cost_micros(1000, 500, 2_500_000, 10_000_000)
        );
        // No overflow with absurd inputs.
        assert_eq!(
            cost_micros(u64::MAX, u64::MAX, MAX_PRICE_MICROS, MAX_PRICE_MICROS),
            i64::MAX
        );
    }
}

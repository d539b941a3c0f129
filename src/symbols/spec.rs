//! The configured symbols as the user writes them: `SYMBOL:PRICE` pairs, from
//! `--symbols` (comma-separated) or `--symbols-file` (one per line).
//!
//! Parsing only: nothing here reads a file (the option's row does) or knows the table
//! built from the result ([`super::SymbolTable`]).

use super::MAX_SYMBOLS;

/// One traded symbol and its start price.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSpec {
    pub name: String,
    pub start_price: f64,
}

/// Parses `BTC-USD:42000,ETH-USD:2500`: names of `[A-Za-z0-9._-]`, positive finite prices.
pub fn parse_symbols(v: &str) -> Result<Vec<SymbolSpec>, String> {
    parse_symbol_items(v.split(','))
}

/// Parses a symbols file: one `SYMBOL:PRICE` per line; blank lines and lines starting
/// with `#` are skipped.
pub fn parse_symbol_lines(text: &str) -> Result<Vec<SymbolSpec>, String> {
    parse_symbol_items(text.lines().filter(|l| !l.trim_start().starts_with('#')))
}

fn parse_symbol_items<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<SymbolSpec>, String> {
    let mut symbols: Vec<SymbolSpec> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for item in items.map(str::trim).filter(|s| !s.is_empty()) {
        let (name, price) =
            item.split_once(':').ok_or_else(|| format!("expected SYMBOL:PRICE (got {item:?})"))?;
        let name = name.trim();
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(format!(
                "a symbol name is 1 to 32 of A-Z, a-z, 0-9, '.', '_' and '-' (got {name:?})"
            ));
        }
        let start_price: f64 = price
            .trim()
            .parse()
            .map_err(|_| format!("the price is not a number (got {item:?})"))?;
        if !start_price.is_finite() || start_price <= 0.0 || start_price > 1e12 {
            return Err(format!(
                "a price must be above 0 and at most 1000000000000 (got {item:?})"
            ));
        }
        if !seen.insert(name) {
            return Err(format!("symbol {name} listed twice"));
        }
        if symbols.len() == MAX_SYMBOLS {
            return Err(format!("more than {MAX_SYMBOLS} symbols"));
        }
        symbols.push(SymbolSpec { name: name.to_owned(), start_price });
    }
    if symbols.is_empty() {
        return Err("no symbols given (SYMBOL:PRICE,...)".into());
    }
    Ok(symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_keep_their_order_and_their_start_prices() {
        let symbols = parse_symbols(" BTC-USD:42000 , eth.x_1:0.5").unwrap();
        let want = [("BTC-USD", 42000.0), ("eth.x_1", 0.5)];
        let got: Vec<(&str, f64)> =
            symbols.iter().map(|s| (s.name.as_str(), s.start_price)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_symbols_file_skips_comments_and_blank_lines() {
        let text = "# prices\nBTC-USD:42000\n\n  # more\nSOL-USD:95\n";
        let names: Vec<String> =
            parse_symbol_lines(text).unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["BTC-USD", "SOL-USD"]);
    }

    #[test]
    fn every_refusal_says_what_was_wrong() {
        let err = |v: &str| parse_symbols(v).unwrap_err();
        assert!(err("BTC").starts_with("expected SYMBOL:PRICE"));
        assert!(err("B TC:1").starts_with("a symbol name is 1 to 32"));
        assert!(err(&format!("{}:1", "X".repeat(33))).starts_with("a symbol name"));
        assert!(err("BTC:abc").starts_with("the price is not a number"));
        for price in ["0", "-1", "inf", "NaN", "1e13"] {
            assert!(err(&format!("BTC:{price}")).starts_with("a price must be"), "{price}");
        }
        assert_eq!(err("A:1,A:2"), "symbol A listed twice");
        assert_eq!(err(" , "), "no symbols given (SYMBOL:PRICE,...)");
        let many: Vec<String> = (0..=MAX_SYMBOLS).map(|i| format!("S{i}:1")).collect();
        assert_eq!(err(&many.join(",")), format!("more than {MAX_SYMBOLS} symbols"));
    }
}

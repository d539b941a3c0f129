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

//! Flag values: numbers, durations, rates, addresses and report paths, each refused
//! with a message that names the flag and says what it accepts.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::ArgError;

/// A flag's value as given, with the flag's name for the error that refuses it.
pub(super) struct Given {
    pub(super) flag: &'static str,
    pub(super) text: String,
}

impl Given {
    pub(super) fn invalid(&self, why: &'static str) -> ArgError {
        invalid(self.flag, &self.text, why)
    }

    /// A whole number of at least 1.
    pub(super) fn positive(&self) -> Result<usize, ArgError> {
        match self.text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(self.invalid("must be a whole number of at least 1")),
        }
    }

    pub(super) fn duration(&self) -> Result<Duration, ArgError> {
        parse_duration(&self.text).ok_or_else(|| {
            self.invalid("expects a duration with a unit: ms, s or m (500ms, 30s, 2m)")
        })
    }

    pub(super) fn rate(&self) -> Result<f64, ArgError> {
        parse_rate(self.flag, &self.text)
    }

    /// A `.html` or `.svg` file (`--report`).
    pub(super) fn report_path(self) -> Result<PathBuf, ArgError> {
        if !(self.text.ends_with(".html") || self.text.ends_with(".svg")) {
            return Err(self.invalid("must end in .html or .svg"));
        }
        Ok(self.text.into())
    }

    /// `IP,IP,...` (`--bind`).
    pub(super) fn addresses(&self) -> Result<Vec<IpAddr>, ArgError> {
        let ips = self
            .text
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.trim().parse().map_err(|_| {
                    self.invalid("expects IP addresses separated by commas (no names)")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ips.is_empty() {
            return Err(self.invalid("expects at least one IP address"));
        }
        Ok(ips)
    }
}

pub(super) fn invalid(flag: &'static str, value: &str, why: &'static str) -> ArgError {
    ArgError::Invalid { flag, value: value.to_string(), why }
}

/// `500ms`, `30s`, `2m`; `0` alone is allowed.
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// `500/s`, `6000/m` or `500`: per second (`--ramp`, `--churn`).
pub(crate) fn parse_rate(flag: &'static str, v: &str) -> Result<f64, ArgError> {
    let (number, per) = match v.split_once('/') {
        Some((n, "s")) => (n, 1.0),
        Some((n, "m")) => (n, 60.0),
        Some(_) => return Err(invalid(flag, v, "expects a rate: N/s, N/m or N (per second)")),
        None => (v, 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n / per),
        _ => Err(invalid(flag, v, "expects a rate above zero: N/s, N/m or N (per second)")),
    }
}

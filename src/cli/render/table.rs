//! Docker CLI text helpers: go-units sizes and durations, `tabwriter` columns, short ids.

use crate::digest::Digest;
use anyhow::Result;
use std::io::Write;

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    // Go %.3g: 3 significant digits, no trailing zeros.
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

/// go-units `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let hours_rounded = (secs as f64 / 3600.0 + 0.5) as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours_rounded == 1 => "About an hour".into(),
        _ if hours_rounded < 48 => format!("{hours_rounded} hours"),
        _ if hours_rounded < 24 * 7 * 2 => format!("{} days", hours_rounded / 24),
        _ if hours_rounded < 24 * 30 * 2 => format!("{} weeks", hours_rounded / 24 / 7),
        _ if hours_rounded < 24 * 365 * 2 => format!("{} months", hours_rounded / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

pub(super) fn parse_time(created: Option<&str>) -> Option<jiff::Timestamp> {
    created.and_then(|c| c.parse::<jiff::Timestamp>().ok())
}

pub(super) fn since(created: Option<&str>, now: jiff::Timestamp) -> String {
    match parse_time(created) {
        Some(t) => format!(
            "{} ago",
            human_duration(now.as_second().saturating_sub(t.as_second()))
        ),
        None => "N/A".into(),
    }
}

/// Aligned columns like Go's `tabwriter(minwidth 10, padding 3)` as the docker CLI uses it.
pub(super) fn write_table(out: &mut dyn Write, rows: &[Vec<String>]) -> Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max((cell.chars().count() + 3).max(10));
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

pub(super) fn short_id(id: &Digest, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.short().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_units_formatting() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(12), "12B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(7_800_000), "7.8MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(3599), "59 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(100 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn table_alignment() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &[
                vec!["A".into(), "LONGER-HEADER".into(), "X".into()],
                vec!["value".into(), "b".into(), "last".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A         LONGER-HEADER   X\nvalue     b               last\n"
        );
    }
}

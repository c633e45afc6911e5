//! `rbuild history`: the rows `store::history` gives, as `docker history` prints them (table,
//! `--format` templates, JSON).

use super::format::{json_object, Format, Template};
use super::table::{human_size, parse_time, short_id, since, write_table};
use crate::store::history::history_rows;
use crate::store::{HistoryRow, Store};
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::io::Write;

/// Options of `history`, as `docker history`'s flags.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// `--no-trunc`: full ids and CREATED BY.
    pub no_trunc: bool,
    /// `-q`: ids only (with the table format).
    pub quiet: bool,
    /// `-H/--human` (default true): sizes and dates for humans, else bytes and RFC 3339.
    pub human: bool,
    /// `--format`: `table`, `table TEMPLATE`, `json` or `TEMPLATE`.
    pub format: Option<String>,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            no_trunc: false,
            quiet: false,
            human: true,
            format: None,
        }
    }
}

/// Go's `time.Format(time.RFC3339)` in the local zone (as the docker CLI prints CreatedAt).
fn rfc3339_local(created: Option<&str>) -> String {
    let t = parse_time(created).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let z = t.to_zoned_datetime(jiff::tz::TimeZone::system());
    let s = z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    match s.strip_suffix("+00:00") {
        Some(utc) => format!("{utc}Z"),
        None => s,
    }
}

/// A history row's template fields, as the docker CLI's history formatter computes them.
fn history_fields(
    r: &HistoryRow,
    opts: &HistoryOptions,
    now: jiff::Timestamp,
) -> BTreeMap<&'static str, String> {
    let id = match &r.id {
        Some(id) => short_id(id, opts.no_trunc),
        None => "<missing>".to_string(),
    };
    let created_at = rfc3339_local(r.created.as_deref());
    // Dates before 2000 (e.g. SOURCE_DATE_EPOCH=0) are left blank rather than "55 years ago".
    let y2k = 946_684_800;
    let created_since = if !opts.human {
        created_at.clone()
    } else {
        match parse_time(r.created.as_deref()) {
            Some(t) if t.as_second() > y2k => since(r.created.as_deref(), now),
            _ => String::new(),
        }
    };
    let by = r.created_by.replace('\t', " ");
    let by = if opts.no_trunc || by.chars().count() <= 45 {
        by
    } else {
        let cut: String = by.chars().take(44).collect();
        format!("{cut}…")
    };
    let size = if opts.human {
        human_size(r.size)
    } else {
        r.size.to_string()
    };
    BTreeMap::from([
        ("ID", id),
        ("CreatedSince", created_since),
        ("CreatedAt", created_at),
        ("CreatedBy", by),
        ("Size", size),
        ("Comment", r.comment.clone()),
    ])
}

/// `history`: newest entry first; CREATED BY truncated to 45 columns unless `no_trunc`.
pub fn history(store: &Store, out: &mut dyn Write, name: &str, no_trunc: bool) -> Result<()> {
    let opts = HistoryOptions {
        no_trunc,
        ..Default::default()
    };
    history_with(store, out, name, &opts)
}

/// `history` with all of `docker history`'s flags.
pub fn history_with(
    store: &Store,
    out: &mut dyn Write,
    name: &str,
    opts: &HistoryOptions,
) -> Result<()> {
    let split_cells = |line: &str| line.split('\t').map(String::from).collect::<Vec<_>>();
    let now = jiff::Timestamp::now();
    let rows = history_rows(store, name)?;
    let bad = |e: String| anyhow!("--format: {e}");
    let mut format = Format::parse(opts.format.as_deref().unwrap_or("")).map_err(bad)?;
    if format == Format::Table(None) {
        let default = if opts.quiet {
            "{{.ID}}"
        } else if opts.human {
            "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
        } else {
            "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
        };
        format = Format::parse(default).map_err(bad)?;
    }
    let fields: Vec<_> = rows.iter().map(|r| history_fields(r, opts, now)).collect();
    match format {
        Format::Json => {
            for f in &fields {
                writeln!(out, "{}", json_object(f))?;
            }
        }
        Format::Raw(t) => {
            for f in &fields {
                writeln!(out, "{}", t.render(f).map_err(bad)?)?;
            }
        }
        Format::Table(t) => {
            // (A bare `table` was replaced by the default columns above.)
            let t: Template = t.unwrap_or_default();
            let header = BTreeMap::from([
                ("ID", "IMAGE".to_string()),
                ("CreatedSince", "CREATED".to_string()),
                ("CreatedAt", "CREATED AT".to_string()),
                ("CreatedBy", "CREATED BY".to_string()),
                ("Size", "SIZE".to_string()),
                ("Comment", "COMMENT".to_string()),
            ]);
            let mut table = vec![split_cells(&t.render(&header).map_err(bad)?)];
            for f in &fields {
                table.push(split_cells(&t.render(f).map_err(bad)?));
            }
            write_table(out, &table)?;
        }
    }
    Ok(())
}

//! The docker CLI's `--format` for the image commands: `table` (the default columns),
//! `table TEMPLATE`, `json` (one `{{json .}}` object per line) and `TEMPLATE`.
//!
//! Hand-written rather than a Go `text/template` engine: the image commands only expose flat string
//! fields, so the subset people use with them (`{{.Field}}`, `{{json .}}`, `{{json .Field}}`, and
//! the `\t` / `\n` escapes the docker CLI replaces before parsing) covers them; anything else is a
//! clear error instead of a silently wrong output.

use std::collections::BTreeMap;

/// A parsed `--format` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `table` or `table TEMPLATE`: a header row, then aligned columns split at tabs.
    Table(Option<Template>),
    /// `json`: each row as one JSON object.
    Json,
    /// A bare template, one rendering per row.
    Raw(Template),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
    /// `{{json .}}` (None) or `{{json .Field}}`.
    Json(Option<String>),
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        if s.is_empty() || s == "table" {
            return Ok(Format::Table(None));
        }
        if s == "json" {
            return Ok(Format::Json);
        }
        match s.strip_prefix("table ") {
            Some(rest) => Ok(Format::Table(Some(Template::parse(rest)?))),
            None => Ok(Format::Raw(Template::parse(s)?)),
        }
    }
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        // As the docker CLI: trim spaces, then turn typed `\t` and `\n` into real ones.
        let s = s
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut rest = s.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("template {s:?}: unclosed action"))?;
            let action = after[..end].trim();
            pieces.push(parse_action(action).ok_or_else(|| {
                format!(
                    "template {s:?}: unsupported action {{{{{action}}}}} \
                     (rbuild supports {{{{.Field}}}}, {{{{json .}}}} and {{{{json .Field}}}})"
                )
            })?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(pieces))
    }

    /// Renders one row; `fields` maps field names to their values.
    pub fn render(&self, fields: &BTreeMap<&str, String>) -> Result<String, String> {
        let get = |name: &str| {
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| format!("template: can't evaluate field {name}"))
        };
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => out.push_str(&get(f)?),
                Piece::Json(None) => out.push_str(&json_object(fields)),
                Piece::Json(Some(f)) => {
                    out.push_str(&serde_json::Value::String(get(f)?).to_string())
                }
            }
        }
        Ok(out)
    }
}

fn parse_action(action: &str) -> Option<Piece> {
    let field = |s: &str| {
        let name = s.strip_prefix('.')?;
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| name.to_string())
    };
    if let Some(arg) = action.strip_prefix("json ") {
        let arg = arg.trim();
        return if arg == "." {
            Some(Piece::Json(None))
        } else {
            field(arg).map(|f| Piece::Json(Some(f)))
        };
    }
    field(action).map(Piece::Field)
}

/// The row as a JSON object with keys in order, like Go's `json.Marshal` of a map.
pub fn json_object(fields: &BTreeMap<&str, String>) -> String {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> BTreeMap<&'static str, String> {
        BTreeMap::from([("ID", "abc".to_string()), ("Size", "1kB".to_string())])
    }

    #[test]
    fn templates_render_fields_json_and_escapes() {
        let t = Template::parse("{{.ID}}\\t{{ .Size }} {{json .ID}}").unwrap();
        assert_eq!(t.render(&row()).unwrap(), "abc\t1kB \"abc\"");
        let t = Template::parse("{{json .}}").unwrap();
        assert_eq!(t.render(&row()).unwrap(), r#"{"ID":"abc","Size":"1kB"}"#);
        assert!(Template::parse("{{.Nope}}")
            .unwrap()
            .render(&row())
            .unwrap_err()
            .contains("can't evaluate field Nope"));
        assert!(Template::parse("{{range .}}").is_err());
        assert!(Template::parse("{{.ID").is_err());
        assert_eq!(Format::parse("").unwrap(), Format::Table(None));
        assert_eq!(Format::parse("json").unwrap(), Format::Json);
        assert!(matches!(
            Format::parse("table {{.ID}}").unwrap(),
            Format::Table(Some(_))
        ));
    }
}

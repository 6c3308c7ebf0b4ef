//! One WHERE builder for both dialects, and keyset paging on `id`.
//!
//! A list's filters become SQL only when they are set: `workspace = $1 AND app = $2`, never
//! `($2 IS NULL OR app = $2)`, because a planner cannot pick an index for a condition that may or may
//! not apply. Values are always bound (`$n` placeholders, which SQLite and PostgreSQL both read);
//! only fixed column names and operators are written into the text.

use crate::{Cursor, Seek, StoreError};

/// A bound value.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// The conditions of a statement and their values, in placeholder order.
#[derive(Debug, Default)]
pub(crate) struct Where {
    clauses: Vec<String>,
    pub(crate) args: Vec<Arg>,
    /// Set when a condition can match no row (text no stored value holds); the caller skips the query.
    pub(crate) impossible: bool,
}

impl Where {
    /// Adds a value and answers its placeholder.
    pub(crate) fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    /// Adds a condition (written with placeholders from [`Where::arg`]).
    pub(crate) fn and(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `column = value`. Text with a NUL byte matches nothing: PostgreSQL cannot store one in text
    /// (and refuses it as a parameter), and the services never store one on either backend.
    pub(crate) fn eq_text(&mut self, column: &str, value: &str) {
        if value.contains('\0') {
            self.impossible = true;
            return;
        }
        let p = self.arg(Arg::Text(value.to_owned()));
        self.and(format!("{column} = {p}"));
    }

    pub(crate) fn eq_int(&mut self, column: &str, op: &str, value: i64) {
        let p = self.arg(Arg::Int(value));
        self.and(format!("{column} {op} {p}"));
    }

    /// A case-insensitive substring of any of `columns` (SQL expressions over fixed columns), with
    /// `%`, `_` and `\` in `needle` matched literally.
    pub(crate) fn contains_any(&mut self, columns: &[&str], needle: &str, max_len: usize) {
        if needle.contains('\0') || needle.chars().count() > max_len {
            self.impossible = true;
            return;
        }
        let p = self.arg(Arg::Text(like_contains(&needle.to_lowercase())));
        let ors: Vec<String> = columns.iter().map(|c| format!("LOWER({c}) LIKE {p} ESCAPE '\\'")).collect();
        self.and(format!("({})", ors.join(" OR ")));
    }

    /// `SELECT {columns} FROM {table} WHERE … ORDER BY id … LIMIT n`: the page of `seek`, newest
    /// first after the cursor or oldest first before it (the caller reverses those rows, see
    /// [`page_rows`]). The limit read is one more than asked, to tell whether more follow.
    pub(crate) fn select_page(mut self, columns: &str, table: &str, seek: &Seek) -> (String, Vec<Arg>, i64) {
        let limit = i64::from(seek.limit.clamp(1, 100)) + 1;
        let order = match &seek.cursor {
            Some(Cursor::Before(id)) => {
                let p = self.arg(Arg::Text(id.clone()));
                self.and(format!("id > {p}"));
                "ASC"
            }
            Some(Cursor::After(id)) => {
                let p = self.arg(Arg::Text(id.clone()));
                self.and(format!("id < {p}"));
                "DESC"
            }
            None => "DESC",
        };
        let l = self.arg(Arg::Int(limit));
        let filter =
            if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) };
        (format!("SELECT {columns} FROM {table}{filter} ORDER BY id {order} LIMIT {l}"), self.args, limit)
    }
}

/// A LIKE pattern for "contains `s`", escaping the pattern characters with `\`.
pub(crate) fn like_contains(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The rows of a [`Where::select_page`] query as a page, newest first: the extra row read says more
/// follow, and rows read before a cursor (oldest first) are turned around.
pub(crate) fn page_rows<R, T>(mut rows: Vec<R>, limit_plus_one: i64, seek: &Seek) -> Result<crate::Page<T>, StoreError>
where
    T: TryFrom<R>,
    StoreError: From<T::Error>,
{
    let has_more = rows.len() as i64 >= limit_plus_one;
    if has_more {
        rows.truncate(rows.len() - 1);
    }
    if matches!(seek.cursor, Some(Cursor::Before(_))) {
        rows.reverse();
    }
    let items = rows.into_iter().map(T::try_from).collect::<Result<_, _>>().map_err(StoreError::from)?;
    Ok(crate::Page { items, has_more })
}

/// Binds a [`Where`]'s values to a query, in order.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                $crate::sql_where::Arg::Text(s) => q.bind(s.as_str()),
                $crate::sql_where::Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}
pub(crate) use bind_args;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_pattern_characters_literally() {
        for (input, pattern) in [
            ("abc", "%abc%"),
            ("50%", "%50\\%%"),
            ("a_b", "%a\\_b%"),
            ("back\\slash", "%back\\\\slash%"),
            ("'; DROP TABLE api_keys; --", "%'; DROP TABLE api\\_keys; --%"),
            ("", "%%"),
        ] {
            assert_eq!(like_contains(input), pattern, "{input}");
        }
    }

    #[test]
    fn only_set_filters_become_sql_and_values_are_bound() {
        let mut w = Where::default();
        w.eq_text("workspace", "default");
        w.eq_text("app", "x' OR '1'='1");
        let (sql, args, limit) =
            w.select_page("id", "api_keys", &Seek { limit: 100, cursor: Some(Cursor::After("key_1".into())) });
        assert_eq!(
            sql,
            "SELECT id FROM api_keys WHERE workspace = $1 AND app = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
        );
        assert_eq!(args.len(), 4);
        assert_eq!(limit, 101);

        let (sql, _, _) =
            Where::default().select_page("id", "t", &Seek { limit: 5, cursor: Some(Cursor::Before("k".into())) });
        assert_eq!(sql, "SELECT id FROM t WHERE id > $1 ORDER BY id ASC LIMIT $2");
    }

    #[test]
    fn text_no_stored_value_holds_matches_nothing() {
        let mut w = Where::default();
        w.eq_text("actor", "a\0b");
        assert!(w.impossible);
        let mut w = Where::default();
        w.contains_any(&["name"], &"x".repeat(11), 10);
        assert!(w.impossible);
        let mut w = Where::default();
        w.contains_any(&["name"], "\u{1}\t\r\n", 10);
        assert!(!w.impossible, "other control characters are just text that matches nothing stored");
    }
}

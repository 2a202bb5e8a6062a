//! `<table>_links`: relations between memories, `(src, dst, kind, weight, created_at)`:
//! the `supersedes` links of the near-duplicate check, and the links users make with
//! `subcog_link` (kinds [`KINDS`] or any other short string).

use rusqlite::{OptionalExtension, params};

use super::history::{LINK, UNLINK};
use super::{SUPERSEDES, Store, id_list};
use crate::error::Result;

/// The link kinds subcog gives a meaning to (any other non-empty string is a user kind):
/// `relates` (symmetric association), `supersedes` (src replaces dst: dst is hidden from
/// searches and contexts), `contradicts` (marked when both are in a context),
/// `derived_from` (src was derived from dst), `part_of` (src is part of dst).
pub(crate) const KINDS: &[&str] = &[
    "relates",
    SUPERSEDES,
    "contradicts",
    "derived_from",
    "part_of",
];

/// `kind` of a link whose two ends disagree (`subcog_context` marks the pair).
pub(crate) const CONTRADICTS: &str = "contradicts";

/// One row of `<table>_links`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Link {
    /// The memory the link goes from.
    pub(crate) src: i64,
    /// The memory the link goes to.
    pub(crate) dst: i64,
    /// The relation, e.g. `relates` or `supersedes`.
    pub(crate) kind: String,
    /// Strength (for `supersedes` from dedup: the cosine similarity; user links: 1 by
    /// default).
    pub(crate) weight: f64,
    /// When the link was made, ms since the Unix epoch.
    pub(crate) created_at: i64,
}

impl Store {
    /// Records the link `src -kind-> dst` with `weight` (for [`SUPERSEDES`]: the cosine
    /// similarity), replacing an existing one of the same three.
    pub(crate) fn add_link(
        &self,
        src: i64,
        dst: i64,
        kind: &str,
        weight: f64,
        now: i64,
    ) -> Result<()> {
        let before = if self.history_on() {
            self.link(src, dst, kind)?
        } else {
            None
        };
        let sql = self.sql(|| {
            format!(
                "INSERT OR REPLACE INTO {}(src, dst, kind, weight, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
                self.q.links
            )
        });
        self.conn
            .prepare_cached(&sql)?
            .execute(params![src, dst, kind, weight, now])?;
        if self.history_on() {
            let after = Link {
                src,
                dst,
                kind: kind.to_string(),
                weight,
                created_at: now,
            };
            self.record_link(LINK, before.as_ref(), Some(&after))?;
        }
        Ok(())
    }

    /// The link `src -kind-> dst`, if it exists.
    pub(super) fn link(&self, src: i64, dst: i64, kind: &str) -> Result<Option<Link>> {
        let sql = self.sql(|| {
            format!(
                "SELECT src, dst, kind, weight, created_at FROM {} \
                 WHERE src = ?1 AND kind = ?2 AND dst = ?3",
                self.q.links
            )
        });
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![src, kind, dst], read_link)
            .optional()?)
    }

    /// The links `src -> dst` (of `kind`, or every kind), for the history of a removal.
    fn links_between(&self, src: i64, dst: i64, kind: Option<&str>) -> Result<Vec<Link>> {
        let sql = self.sql(|| {
            format!(
                "SELECT src, dst, kind, weight, created_at FROM {} \
                 WHERE src = ?1 AND dst = ?2 AND (?3 IS NULL OR kind = ?3)",
                self.q.links
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map(params![src, dst, kind], read_link)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Records the removal of each of `links` (history on).
    fn record_unlinks(&self, links: &[Link]) -> Result<()> {
        for l in links {
            self.record_link(UNLINK, Some(l), None)?;
        }
        Ok(())
    }

    /// Every link from or to one of `ids`, in one statement, ordered by `(src, kind, dst)`.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn links_of(&self, ids: &[i64]) -> Result<Vec<Link>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql(|| {
            format!(
                "SELECT src, dst, kind, weight, created_at FROM {l} \
                 WHERE src IN (SELECT value FROM json_each(?1)) \
                 OR dst IN (SELECT value FROM json_each(?1)) ORDER BY src, kind, dst",
                l = self.q.links
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let links = st
            .query_map([id_list(ids)], read_link)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(links)
    }

    /// Deletes the links `src -kind-> dst` (every kind when `kind` is `None`); returns
    /// how many were deleted.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn remove_link(&self, src: i64, dst: i64, kind: Option<&str>) -> Result<usize> {
        if self.history_on() {
            let gone = self.links_between(src, dst, kind)?;
            self.record_unlinks(&gone)?;
        }
        let sql = self.sql(|| {
            format!(
                "DELETE FROM {} WHERE src = ?1 AND dst = ?2 AND (?3 IS NULL OR kind = ?3)",
                self.q.links
            )
        });
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .execute(params![src, dst, kind])?)
    }

    /// Deletes every link from or to `id` (the memory is deleted).
    pub(super) fn delete_links(&self, id: i64) -> Result<()> {
        if self.history_on() {
            let gone = self.links_of(&[id])?;
            self.record_unlinks(&gone)?;
        }
        let sql = self.sql(|| format!("DELETE FROM {} WHERE src = ?1 OR dst = ?1", self.q.links));
        self.conn.prepare_cached(&sql)?.execute([id])?;
        Ok(())
    }

    /// Points every link of memory `old` at `new` (an UPDATE that changes the id).
    pub(crate) fn move_links(&self, old: i64, new: i64) -> Result<()> {
        if self.history_on() {
            // Recorded as the removal of each link and the addition of its moved copy
            // (what the two UPDATE OR REPLACE below do, link by link).
            let moved = self.links_of(&[old])?;
            self.delete_links(old)?;
            let at = |x: i64| if x == old { new } else { x };
            for l in moved {
                self.add_link(at(l.src), at(l.dst), &l.kind, l.weight, l.created_at)?;
            }
            return Ok(());
        }
        let src = self.sql(|| {
            format!(
                "UPDATE OR REPLACE {} SET src = ?2 WHERE src = ?1",
                self.q.links
            )
        });
        self.conn.prepare_cached(&src)?.execute([old, new])?;
        let dst = self.sql(|| {
            format!(
                "UPDATE OR REPLACE {} SET dst = ?2 WHERE dst = ?1",
                self.q.links
            )
        });
        self.conn.prepare_cached(&dst)?.execute([old, new])?;
        Ok(())
    }

    /// The newest memory that supersedes `id`, with the link's weight (similarity).
    pub(crate) fn superseded_by(&self, id: i64) -> Result<Option<(i64, f64)>> {
        let sql = self.sql(|| {
            format!(
                "SELECT src, weight FROM {} WHERE dst = ?1 AND kind = ?2 \
                 ORDER BY src DESC LIMIT 1",
                self.q.links
            )
        });
        self.link_query(&sql, id)
    }

    /// The memory `id` supersedes, with the link's weight (similarity).
    pub(crate) fn supersedes(&self, id: i64) -> Result<Option<(i64, f64)>> {
        let sql = self.sql(|| {
            format!(
                "SELECT dst, weight FROM {} WHERE src = ?1 AND kind = ?2 \
                 ORDER BY dst DESC LIMIT 1",
                self.q.links
            )
        });
        self.link_query(&sql, id)
    }

    /// Runs one of the two [`SUPERSEDES`] lookups: `(other end, weight)` of the link
    /// whose known end is `id`.
    fn link_query(&self, sql: &str, id: i64) -> Result<Option<(i64, f64)>> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_row(params![id, SUPERSEDES], |r| {
                Ok((r.get(0)?, r.get::<_, Option<f64>>(1)?.unwrap_or(0.0)))
            })
            .optional()?)
    }

    /// Deletes links that name a memory that does not exist (for `'rebuild'`).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn delete_orphan_links(&self) -> Result<usize> {
        Ok(self.conn.execute(
            &self.sql(|| {
                format!(
                    "DELETE FROM {l} WHERE NOT EXISTS (SELECT 1 FROM {c} WHERE {c}.id = {l}.src) \
                 OR NOT EXISTS (SELECT 1 FROM {c} WHERE {c}.id = {l}.dst)",
                    l = self.q.links,
                    c = self.q.content
                )
            }),
            [],
        )?)
    }
}

/// A [`Link`] from `src, dst, kind, weight, created_at`.
pub(super) fn read_link(r: &rusqlite::Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        src: r.get(0)?,
        dst: r.get(1)?,
        kind: r.get(2)?,
        weight: r.get::<_, Option<f64>>(3)?.unwrap_or(0.0),
        created_at: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
    })
}

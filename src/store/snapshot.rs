//! `<table>_config` (options, format, HNSW generation) and `<table>_hnsw` (the serialized
//! usearch graph in 1 MiB chunks).

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::{Error, Result};

/// What the HNSW graph holds for each vector: config `hnsw_vectors`, written with every
/// snapshot so that a snapshot is read back as it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GraphVectors {
    /// The float32 vectors as stored, compared by the table's metric (L2 and IP tables, and
    /// cosine snapshots of versions before unit vectors): `f32`, or no key.
    Float,
    /// Unit-length binary16 copies compared by `1 - a.b` (cosine snapshots written before
    /// int8 graphs): `unit_f16`.
    UnitF16,
    /// usearch's int8 codes of the unit vectors (`trunc(127 u_i)`, 1 byte per dimension)
    /// compared by the cosine of the codes ([`crate::vector::i8_cos_distance`]): `unit_i8`.
    /// What cosine tables build now.
    UnitI8,
}

impl GraphVectors {
    /// What a new graph of a table with this metric holds.
    pub(crate) fn for_new_graph(metric: crate::vector::Metric) -> Self {
        if metric == crate::vector::Metric::Cosine {
            GraphVectors::UnitI8
        } else {
            GraphVectors::Float
        }
    }

    /// Whether the graph holds unit-length copies (not the stored vectors themselves), so
    /// that its distances only approximate the exact ones.
    pub(crate) fn unit(self) -> bool {
        self != GraphVectors::Float
    }

    /// The `hnsw_vectors` value.
    fn tag(self) -> &'static str {
        match self {
            GraphVectors::Float => "f32",
            GraphVectors::UnitF16 => "unit_f16",
            GraphVectors::UnitI8 => "unit_i8",
        }
    }
}

/// Size of one `<table>_hnsw` chunk, in bytes.
const CHUNK: usize = 1 << 20;

/// Asks Linux to back `buf`'s spare capacity with transparent huge pages (when THP is in
/// `madvise` mode): a snapshot of ~100 MB then costs ~50 page faults instead of ~25,000,
/// which was a third of the time to load it. Advisory only; failures are ignored.
fn advise_huge_pages(buf: &mut Vec<u8>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = buf.as_mut_ptr() as usize;
        let end = start + buf.capacity();
        let first = start.next_multiple_of(HUGE);
        if end > first + HUGE {
            let len = (end - first) / HUGE * HUGE;
            // SAFETY: [first, first + len) lies inside `buf`'s allocation, which is not
            // yet written; MADV_HUGEPAGE changes no contents.
            unsafe {
                libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

impl Store {
    /// Reads a config value.
    pub(crate) fn config_get(&self, key: &str) -> Result<Option<String>> {
        let sql = self.sql(|| {
            format!(
                "SELECT CAST(value AS TEXT) FROM {} WHERE key = ?1",
                self.q.config
            )
        });
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([key], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    /// Writes a config value.
    pub(crate) fn config_set(&self, key: &str, value: &str) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "INSERT OR REPLACE INTO {}(key, value) VALUES (?1, ?2)",
                self.q.config
            )
        });
        self.conn
            .prepare_cached(&sql)?
            .execute(params![key, value])?;
        Ok(())
    }

    /// The HNSW snapshot's generation: 0 when there is no snapshot.
    pub(crate) fn generation(&self) -> Result<u64> {
        Ok(self
            .config_get("generation")?
            .and_then(|g| g.parse::<i64>().ok())
            .map(|g| g as u64)
            .unwrap_or(0))
    }

    /// `(generation, hnsw_saved)`: the HNSW generation and the generation the stored
    /// snapshot has; they differ only inside the transaction of a deferred checkpoint
    /// (`hnsw_saved` is absent in databases of format 1 without it: then equal).
    pub(crate) fn snapshot_state(&self) -> Result<(u64, u64)> {
        let g = self.generation()?;
        let saved = self
            .config_get("hnsw_saved")?
            .and_then(|g| g.parse::<i64>().ok())
            .map_or(g, |g| g as u64);
        Ok((g, saved))
    }

    /// The file of the database that holds the table, as `PRAGMA database_list` reports
    /// it: an absolute path, or `""` for in-memory and temporary databases.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn database_file(&self) -> Result<String> {
        let file: Option<String> = self
            .conn
            .prepare_cached("SELECT file FROM pragma_database_list WHERE name = ?1")?
            .query_row([&self.q.raw_schema], |r| r.get(0))
            .optional()?;
        Ok(file.unwrap_or_default())
    }

    /// What the stored snapshot holds (config `hnsw_vectors`; absent in older databases,
    /// whose snapshots hold the float32 vectors as stored).
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a value this version does not know; SQLite errors.
    pub(crate) fn hnsw_vectors(&self) -> Result<GraphVectors> {
        match self.config_get("hnsw_vectors")?.as_deref() {
            None | Some("f32") => Ok(GraphVectors::Float),
            Some("unit_f16") => Ok(GraphVectors::UnitF16),
            Some("unit_i8") => Ok(GraphVectors::UnitI8),
            Some(other) => Err(Error::Corrupt(format!(
                "memories table {}: {}_config hnsw_vectors is {other:?}; expected f32, \
                 unit_f16 or unit_i8 (a newer subcog wrote it?)",
                self.table, self.table
            ))),
        }
    }

    /// Advances the HNSW generation without writing the snapshot, and empties the
    /// pending list (a deferred checkpoint: `hnsw_saved` keeps the stored snapshot's).
    pub(crate) fn set_generation_unsaved(&self, generation: u64) -> Result<()> {
        let (g, saved) = self.snapshot_state()?;
        if g == saved {
            self.config_set("hnsw_saved", &(saved as i64).to_string())?;
        }
        self.config_set("generation", &(generation as i64).to_string())?;
        self.clear_pending()
    }

    /// Reads the serialized HNSW snapshot (empty if none) into one buffer of its exact
    /// size (sized first with `length()`, which SQLite answers from the record header),
    /// so a snapshot of hundreds of MB is copied once, without reallocations.
    ///
    /// Each chunk is read with SQLite's incremental BLOB I/O straight into its place in
    /// the buffer (one handle moved from chunk to chunk, `sqlite3_blob_reopen`), not
    /// assembled in a value first and copied again.
    pub(crate) fn hnsw_blob(&self) -> Result<Vec<u8>> {
        // The size first (from the record headers: no chunk is read), as the buffer's
        // capacity. Then the chunk list is stepped while the chunks are read, so that one
        // statement holds one read transaction for all of them (the BLOB handle reads on
        // the same connection); should a commit have landed in between, the buffer grows.
        let len_sql =
            self.sql(|| format!("SELECT coalesce(sum(length(data)), 0) FROM {}", self.q.hnsw));
        let total: i64 = self
            .conn
            .prepare_cached(&len_sql)?
            .query_row([], |r| r.get(0))?;
        let reserve = |out: &mut Vec<u8>, n: usize| {
            out.try_reserve_exact(n)
                .map_err(|e| Error::Index(format!("HNSW snapshot of {n} more bytes: {e}")))
        };
        let mut out: Vec<u8> = Vec::new();
        reserve(&mut out, usize::try_from(total).unwrap_or(0))?;
        advise_huge_pages(&mut out);
        let list = self.sql(|| {
            format!(
                "SELECT chunk, length(data) FROM {} ORDER BY chunk",
                self.q.hnsw
            )
        });
        let mut st = self.conn.prepare_cached(&list)?;
        let mut rows = st.query([])?;
        let table = format!("{}_hnsw", self.table);
        let mut blob: Option<rusqlite::blob::Blob<'_>> = None;
        while let Some(r) = rows.next()? {
            let chunk: i64 = r.get(0)?;
            let len = usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0);
            if out.capacity() - out.len() < len {
                reserve(&mut out, len)?;
            }
            match blob.as_mut() {
                Some(b) => b.reopen(chunk)?,
                None => {
                    blob = Some(self.conn.blob_open(
                        self.q.raw_schema.as_str(),
                        table.as_str(),
                        "data",
                        chunk,
                        true,
                    )?);
                }
            }
            let Some(b) = blob.as_ref() else {
                continue;
            };
            let at = out.len();
            b.raw_read_at_exact(&mut out.spare_capacity_mut()[..len], 0)?;
            // SAFETY: `raw_read_at_exact` initialised the `len` bytes after `at` (it fails
            // otherwise), and the capacity was checked above to hold them.
            unsafe { out.set_len(at + len) };
        }
        Ok(out)
    }

    /// Replaces the HNSW snapshot with the one stored in `src` (another table's store,
    /// on its own connection), tagged `generation` and `vectors` (as [`Store::save_hnsw`]):
    /// the same bytes in the same 1 MiB chunks as `save_hnsw(&src.hnsw_blob()?, ..)`
    /// writes, streamed chunk by chunk instead of read whole first (a snapshot is about
    /// 0.5 KB per 384-d vector with int8 codes).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn save_hnsw_from(
        &self,
        src: &Store,
        generation: u64,
        vectors: GraphVectors,
    ) -> Result<()> {
        self.conn
            .execute(&self.sql(|| format!("DELETE FROM {}", self.q.hnsw)), [])?;
        let put = self.sql(|| format!("INSERT INTO {}(chunk, data) VALUES (?1, ?2)", self.q.hnsw));
        let mut put = self.conn.prepare_cached(&put)?;
        let get = src.sql(|| format!("SELECT data FROM {} ORDER BY chunk", src.q.hnsw));
        let mut get = src.conn.prepare_cached(&get)?;
        let mut rows = get.query([])?;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
        let mut n: i64 = 0;
        while let Some(r) = rows.next()? {
            let rusqlite::types::ValueRef::Blob(mut b) = r.get_ref(0)? else {
                continue;
            };
            while !b.is_empty() {
                if buf.is_empty() && b.len() >= CHUNK {
                    // A whole chunk straight from the source row.
                    put.execute(params![n, &b[..CHUNK]])?;
                    n += 1;
                    b = &b[CHUNK..];
                    continue;
                }
                let take = (CHUNK - buf.len()).min(b.len());
                buf.extend_from_slice(&b[..take]);
                b = &b[take..];
                if buf.len() == CHUNK {
                    put.execute(params![n, buf.as_slice()])?;
                    n += 1;
                    buf.clear();
                }
            }
        }
        if !buf.is_empty() {
            put.execute(params![n, buf.as_slice()])?;
        }
        self.config_set("generation", &(generation as i64).to_string())?;
        self.config_set("hnsw_saved", &(generation as i64).to_string())?;
        self.config_set("hnsw_vectors", vectors.tag())?;
        Ok(())
    }

    /// Replaces the HNSW snapshot with `data`, tagged `generation` and with what its graph
    /// holds (`vectors`, config `hnsw_vectors`), inside the caller's
    /// transaction. The pending list is left alone: a checkpoint empties it itself
    /// ([`Store::clear_pending`]), while writing a deferred snapshot at COMMIT must keep
    /// the ids that became pending after the deferred checkpoint.
    pub(crate) fn save_hnsw(
        &self,
        data: &[u8],
        generation: u64,
        vectors: GraphVectors,
    ) -> Result<()> {
        self.conn
            .execute(&self.sql(|| format!("DELETE FROM {}", self.q.hnsw)), [])?;
        let sql = self.sql(|| format!("INSERT INTO {}(chunk, data) VALUES (?1, ?2)", self.q.hnsw));
        let mut st = self.conn.prepare_cached(&sql)?;
        for (i, c) in data.chunks(CHUNK).enumerate() {
            st.execute(params![i as i64, c])?;
        }
        self.config_set("generation", &(generation as i64).to_string())?;
        self.config_set("hnsw_saved", &(generation as i64).to_string())?;
        self.config_set("hnsw_vectors", vectors.tag())?;
        Ok(())
    }
}

#[cfg(all(test, feature = "bundled"))]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::options::TableOptions;

    fn store() -> Store {
        let conn = Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        Store::create(conn, "main", "m", TableOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `(chunk, data)` rows of `s`'s `_hnsw`.
    fn chunks(s: &Store) -> Vec<(i64, Vec<u8>)> {
        let mut st = s
            .conn
            .prepare("SELECT chunk, data FROM m_hnsw ORDER BY chunk")
            .unwrap_or_else(|e| panic!("{e}"));
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_streamed_snapshot_is_the_one_save_hnsw_writes() {
        let data: Vec<u8> = (0..(2 * CHUNK + CHUNK / 3))
            .map(|i| (i % 251) as u8)
            .collect();
        let want = store();
        want.save_hnsw(&data, 7, GraphVectors::UnitI8)
            .unwrap_or_else(|e| panic!("{e}"));
        // Sources stored in 1 MiB chunks, and in odd ones (re-chunked on the way).
        let odd = store();
        for (i, c) in data.chunks(700_001).enumerate() {
            odd.conn
                .execute(
                    "INSERT INTO m_hnsw(chunk, data) VALUES (?1, ?2)",
                    params![i as i64, c],
                )
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for src in [&want, &odd] {
            let dst = store();
            dst.save_hnsw_from(src, 7, GraphVectors::UnitI8)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(chunks(&dst), chunks(&want));
            assert_eq!(dst.hnsw_blob().unwrap_or_default(), data);
            assert_eq!(dst.snapshot_state().unwrap_or_default(), (7, 7));
            assert_eq!(dst.hnsw_vectors().ok(), Some(GraphVectors::UnitI8));
        }
        // Nothing stored: nothing written.
        let dst = store();
        dst.save_hnsw_from(&store(), 3, GraphVectors::Float)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(chunks(&dst).is_empty());
    }
}

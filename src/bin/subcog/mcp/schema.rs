//! The MCP tools' argument and result types: their JSON schemas are what `tools/list`
//! shows (field doc comments are the schema descriptions). The records they contain are
//! [`crate::ops`]'s.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ops::history::{DiffRow, HistoryEntry, Merged, Restored, Snapshot, VersionRef};
use crate::ops::{self, Memory, Mode, Scored};

/// Tool arguments of type `T` whose deserialisation errors name the offending field
/// (`tags: invalid type: string "x", expected a sequence`), so that a model can fix the
/// call. The JSON schema is `T`'s.
#[derive(Debug)]
pub(crate) struct Args<T>(pub(crate) T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Args<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        serde_path_to_error::deserialize(value)
            .map(Args)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    serde::de::Error::custom(inner)
                } else {
                    serde::de::Error::custom(format!("{path}: {inner}"))
                }
            })
    }
}

impl<T: JsonSchema> JsonSchema for Args<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// Arguments of `memory_store`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreArgs {
    /// The text to remember: one self-contained fact, preference, decision or event, written
    /// so that it makes sense without the conversation (e.g. "The user prefers tabs, width 4,
    /// in Go projects").
    pub(crate) content: String,
    /// Namespace to file it under, e.g. "user" or "project:shop". Default "default".
    #[serde(default)]
    #[schemars(with = "String")]
    pub(crate) namespace: Option<String>,
    /// Short tags, e.g. ["preference", "style"].
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(crate) tags: Option<Vec<String>>,
    /// Any JSON object with extra structured data.
    #[serde(default)]
    #[schemars(with = "Map<String, Value>")]
    pub(crate) metadata: Option<Map<String, Value>>,
    /// How important it is, from 0 (trivia) to 1 (critical). Default 0.5.
    #[serde(default)]
    #[schemars(with = "f64", range(min = 0.0, max = 1.0))]
    pub(crate) importance: Option<f64>,
    /// Where it came from, e.g. a file, URL or "conversation".
    #[serde(default)]
    #[schemars(with = "String")]
    pub(crate) source: Option<String>,
    /// Forget it after this long: seconds, or a duration such as "12h", "7d", "2w".
    /// Default: never. Expired memories no longer come back from searches.
    #[serde(default)]
    #[schemars(with = "String")]
    pub(crate) ttl: Option<Value>,
}

/// Result of `memory_store`: the table's dedup outcome.
pub(crate) type StoreResult = ops::Stored;

fn default_k() -> u32 {
    5
}

/// Arguments of `memory_search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchArgs {
    /// What to look for, in natural language (a question or a few keywords).
    pub(crate) query: String,
    /// How many memories to return, 1 to 100. Default 5.
    #[serde(default = "default_k")]
    #[schemars(range(min = 1, max = 100))]
    pub(crate) k: u32,
    /// Only search this namespace.
    #[serde(default)]
    #[schemars(with = "String")]
    pub(crate) namespace: Option<String>,
    /// "hybrid" (default: keywords and meaning combined), "vector" (meaning only) or
    /// "keyword" (exact words only).
    #[serde(default)]
    pub(crate) mode: Mode,
    /// How much newer memories should be preferred, from 0 (not at all, default) to 1.
    #[serde(default)]
    #[schemars(with = "f64", range(min = 0.0, max = 1.0))]
    pub(crate) recency: Option<f64>,
    /// Half-life of the recency preference, e.g. "1d", "7d" (default "30d").
    #[serde(default)]
    #[schemars(with = "String")]
    pub(crate) recency_half_life: Option<String>,
    /// How much more important memories should be preferred, from 0 (default) to 1.
    #[serde(default)]
    #[schemars(with = "f64", range(min = 0.0, max = 1.0))]
    pub(crate) importance: Option<f64>,
}

/// Result of `memory_search`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct SearchResult {
    /// Matching memories, most relevant first.
    pub(crate) results: Vec<Scored>,
}

/// Arguments of `memory_stats`: none (an unknown one is an error, as for the other tools).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsArgs {}

/// Arguments of `memory_get` and `memory_delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdArgs {
    /// Id of the memory (from memory_store, memory_search or memory_list).
    pub(crate) id: i64,
}

/// Arguments of `memory_update`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateArgs {
    /// Id of the memory to change.
    pub(crate) id: i64,
    /// New text (replaces the old text).
    #[serde(default)]
    #[schemars(with = "String")]
    pub(crate) content: Option<String>,
    /// New tags (replace the old tags).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub(crate) tags: Option<Vec<String>>,
    /// New metadata object (replaces the old one).
    #[serde(default)]
    #[schemars(with = "Map<String, Value>")]
    pub(crate) metadata: Option<Map<String, Value>>,
    /// New importance, from 0 to 1.
    #[serde(default)]
    #[schemars(with = "f64", range(min = 0.0, max = 1.0))]
    pub(crate) importance: Option<f64>,
}

/// Result of `memory_delete`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DeleteResult {
    /// Id of the deleted memory.
    pub(crate) id: i64,
    /// Always true (a failed delete is an error result).
    pub(crate) deleted: bool,
}

fn default_limit() -> u32 {
    20
}

/// Arguments of `memory_list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListArgs {
    /// Only list this namespace.
    #[serde(default)]
    #[schemars(with = "String")]
    pub(crate) namespace: Option<String>,
    /// Page size, 1 to 1000. Default 20.
    #[serde(default = "default_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub(crate) limit: u32,
    /// How many of the newest memories to skip (for paging). Default 0.
    #[serde(default)]
    pub(crate) offset: u64,
}

/// Result of `memory_list`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ListResult {
    /// Memories, newest first.
    pub(crate) memories: Vec<Memory>,
}

/// Layout of a context (`memory_context`).
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub(crate) enum ContextFormat {
    /// Plain text: a "# namespace, date" line per group, one memory per line (default).
    #[default]
    Text,
    /// Markdown: a heading per group, one bullet per memory.
    Markdown,
    /// JSON: {"context": [{"id", "namespace", "date", "content", "contradicts"?}]}.
    Json,
}

impl ContextFormat {
    /// The `format` option of `subcog_context`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ContextFormat::Text => "text",
            ContextFormat::Markdown => "markdown",
            ContextFormat::Json => "json",
        }
    }
}

/// Arguments of `memory_context`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextArgs {
    /// The question or task to assemble memories for, in natural language.
    pub(crate) query: String,
    /// Most tokens the context may take (counted with the embedding model's tokenizer;
    /// headers and separators included), 0 to 1000000; e.g. 1024.
    #[schemars(range(min = 0, max = 1_000_000))]
    pub(crate) budget: u32,
    /// Only use memories of this namespace.
    #[serde(default)]
    #[schemars(with = "String")]
    pub(crate) namespace: Option<String>,
    /// "text" (default), "markdown" or "json".
    #[serde(default)]
    pub(crate) format: ContextFormat,
    /// Assemble the context memory would have given then: a snapshot name or a version
    /// (see memory_snapshot, memory_history). Default: now.
    #[serde(default)]
    #[schemars(with = "VersionRef")]
    pub(crate) as_of: Option<VersionRef>,
}

/// Result of `memory_context`.
pub(crate) type ContextResult = ops::Context;

fn default_kind() -> String {
    "relates".to_string()
}

/// Arguments of `memory_link`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkArgs {
    /// Id of the memory the link goes from.
    pub(crate) src: i64,
    /// Id of the memory the link goes to.
    pub(crate) dst: i64,
    /// The relation: "relates" (default), "supersedes" (src replaces dst, which then no
    /// longer comes back from searches), "contradicts", "derived_from", "part_of", or any
    /// short name of your own.
    #[serde(default = "default_kind")]
    pub(crate) kind: String,
    /// Strength of the link (default 1).
    #[serde(default)]
    #[schemars(with = "f64")]
    pub(crate) weight: Option<f64>,
}

/// Result of `memory_link`.
pub(crate) type LinkResult = ops::Linked;

/// Arguments of `memory_history`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryArgs {
    /// Id of the memory (it may have been deleted since).
    pub(crate) id: i64,
}

/// Result of `memory_history`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct HistoryResult {
    /// Id of the memory.
    pub(crate) id: i64,
    /// Every recorded change of it, oldest first.
    pub(crate) versions: Vec<HistoryEntry>,
    /// The table's current version.
    pub(crate) current_version: i64,
}

/// What `memory_snapshot` does.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub(crate) enum SnapshotAction {
    /// Name the current version `name`.
    Create,
    /// List every snapshot.
    List,
    /// Drop snapshot `name` (the history it kept may then be purged by retention).
    Drop,
}

/// Arguments of `memory_snapshot`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotArgs {
    /// "create", "list" or "drop".
    pub(crate) action: SnapshotAction,
    /// The snapshot's name (create and drop): non-empty, at most 256 bytes, not a number
    /// (numbers are versions), e.g. "before-cleanup".
    #[serde(default)]
    #[schemars(with = "String")]
    pub(crate) name: Option<String>,
}

/// Result of `memory_snapshot`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct SnapshotResult {
    /// The action done.
    pub(crate) action: String,
    /// The snapshot created or dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub(crate) name: Option<String>,
    /// The version the snapshot names (create, drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub(crate) version: Option<i64>,
    /// Every snapshot, oldest version first (list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<Snapshot>")]
    pub(crate) snapshots: Option<Vec<Snapshot>>,
    /// The table's current version.
    pub(crate) current_version: i64,
}

fn default_diff_limit() -> u32 {
    100
}

/// Arguments of `memory_diff`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffArgs {
    /// The older side: a snapshot name or a version.
    pub(crate) from: VersionRef,
    /// The newer side: a snapshot name or a version. Default: now.
    #[serde(default)]
    #[schemars(with = "VersionRef")]
    pub(crate) to: Option<VersionRef>,
    /// Most rows to return, 1 to 1000. Default 100; `truncated` says when there were more.
    #[serde(default = "default_diff_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub(crate) limit: u32,
}

/// Result of `memory_diff`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DiffResult {
    /// The older side, as given.
    pub(crate) from: VersionRef,
    /// The newer side, as given; absent for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "VersionRef")]
    pub(crate) to: Option<VersionRef>,
    /// The memories that differ, by id (at most `limit`).
    pub(crate) rows: Vec<DiffRow>,
    /// How many memories differ in all.
    pub(crate) total: i64,
    /// True when `rows` holds fewer than `total` (raise `limit` or narrow the versions).
    pub(crate) truncated: bool,
    /// The table's current version.
    pub(crate) current_version: i64,
}

/// Arguments of `memory_restore`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreArgs {
    /// The snapshot name or version to bring the memories back to.
    pub(crate) to: VersionRef,
}

/// Result of `memory_restore`.
pub(crate) type RestoreResult = Restored;

/// Arguments of `memory_branch`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BranchArgs {
    /// Name of the branch: a new table, e.g. "experiment".
    pub(crate) name: String,
    /// The snapshot name or version to fork at. Default: now.
    #[serde(default)]
    #[schemars(with = "VersionRef")]
    pub(crate) at: Option<VersionRef>,
}

/// Result of `memory_branch`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct BranchResult {
    /// The branch's name (its table).
    pub(crate) name: String,
    /// The table it was forked from.
    pub(crate) base: String,
    /// The version of the base table the branch starts from.
    pub(crate) fork_version: i64,
}

/// How `memory_merge` resolves memories both sides changed since the fork.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub(crate) enum MergePolicy {
    /// Merge nothing when there is a conflict; the error lists the conflicting ids.
    Fail,
    /// Keep the table's version of conflicting memories.
    Ours,
    /// Take the branch's version of conflicting memories.
    Theirs,
}

impl MergePolicy {
    /// The `policy` argument of `subcog_merge`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MergePolicy::Fail => "fail",
            MergePolicy::Ours => "ours",
            MergePolicy::Theirs => "theirs",
        }
    }
}

/// Arguments of `memory_merge`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MergeArgs {
    /// Name of the branch to merge (from memory_branch).
    pub(crate) branch: String,
    /// "fail" (default), "ours" or "theirs".
    #[serde(default)]
    #[schemars(with = "MergePolicy")]
    pub(crate) policy: Option<MergePolicy>,
}

/// Result of `memory_merge`.
pub(crate) type MergeResult = Merged;

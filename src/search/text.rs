//! Free text to a safe FTS5 query.
//!
//! Hybrid search accepts any user text ("what's \"this\"? AND (*"). FTS5 gives its own
//! meaning to quotes, parentheses, `*`, `^`, `:`, `-` and the words AND/OR/NOT/NEAR, so
//! the text is reduced to its words, each quoted as an FTS5 string, joined with OR;
//! BM25 then ranks rows by how many of the rarer words they contain. Very common English
//! words are dropped (they carry little BM25 weight and make OR queries slow), unless the
//! text has nothing else.

/// Common English function words dropped from keyword queries.
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "before", "being", "but", "by", "can", "could", "did", "do", "does", "doing", "for",
    "from", "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i",
    "if", "in", "into", "is", "it", "its", "just", "me", "my", "of", "on", "or", "our", "ours",
    "she", "should", "so", "some", "than", "that", "the", "their", "theirs", "them", "then",
    "there", "these", "they", "this", "those", "to", "too", "us", "very", "was", "we", "were",
    "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would",
    "you", "your", "yours", "s", "t",
];

/// The words of `text`: maximal runs of alphanumeric characters (Unicode), lowercased,
/// first occurrence order, without duplicates.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        let w = w.to_lowercase();
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// Builds an FTS5 query matching rows that contain any word of `text`.
///
/// Returns `None` when the text has no words at all (nothing to search for).
/// Example: `deploy the shop?` -> `"deploy" OR "shop"`; `what's "this"? (*` (stop words
/// only) -> `"what" OR "s" OR "this"`.
pub fn fts_query(text: &str) -> Option<String> {
    let chosen = query_words(text);
    if chosen.is_empty() {
        return None;
    }
    Some(
        chosen
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

/// The words [`fts_query`] joins with OR, in its order: the words of `text` without stop
/// words, or all of them when nothing else is left (empty: no words at all).
pub fn query_words(text: &str) -> Vec<String> {
    let all = words(text);
    let content: Vec<String> = all
        .iter()
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .cloned()
        .collect();
    if content.is_empty() { all } else { content }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_words_and_drops_stopwords() {
        assert_eq!(
            fts_query("How do we deploy the shop?").as_deref(),
            Some("\"deploy\" OR \"shop\"")
        );
    }

    #[test]
    fn fts_syntax_is_neutralised() {
        let q = fts_query("what's \"NEAR\"? AND OR NOT (* col:x ^y -z").unwrap_or_default();
        assert!(!q.contains('(') && !q.contains('*') && !q.contains(':'));
        assert!(q.contains("\"near\"") && q.contains("\"col\""));
    }

    #[test]
    fn only_stopwords_keeps_them() {
        assert_eq!(
            fts_query("who was it").as_deref(),
            Some("\"who\" OR \"was\" OR \"it\"")
        );
    }

    #[test]
    fn empty_text() {
        assert_eq!(fts_query("?!  ..."), None);
        assert_eq!(fts_query(""), None);
    }

    #[test]
    fn unicode_words() {
        assert_eq!(
            fts_query("café naïve").as_deref(),
            Some("\"café\" OR \"naïve\"")
        );
    }
}

//! The tokens file of `subcog serve` and the `subcog token` commands.
//!
//! A JSON file: `{"version": 1, "tokens": [{"name", "sha256", "read", "write", "admin",
//! "created_at", "expires_at"?}, ...]}`. A token is stored only as the SHA-256 hash (hex)
//! of its text; the text itself is printed once, by `subcog token add`. `read` and
//! `write` are lists of namespaces, `["*"]` meaning every namespace. Times are
//! milliseconds since the Unix epoch. The file is written whole to a temporary file and
//! renamed over the old one, with mode 0600.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::access::{Principal, Scope};

/// Prefix of every token (makes them recognisable to secret scanners and to people).
const PREFIX: &str = "sct_";

/// Version of the file format.
const VERSION: u32 = 1;

/// One token's entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    /// Unique name: what the logs and `subcog token list` show.
    pub(crate) name: String,
    /// SHA-256 of the token's text, lowercase hex.
    pub(crate) sha256: String,
    /// Namespaces it may read.
    pub(crate) read: Scope,
    /// Namespaces it may write.
    pub(crate) write: Scope,
    /// Whether `memory_stats` shows it the whole database.
    #[serde(default)]
    pub(crate) admin: bool,
    /// When it was created.
    pub(crate) created_at: i64,
    /// When it stops working; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<i64>,
}

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenFile {
    /// Format version (1).
    pub(crate) version: u32,
    /// The tokens.
    pub(crate) tokens: Vec<Entry>,
}

/// Why a request's token is refused (all are HTTP 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// The token is not in the file (never was, or revoked).
    Unknown,
    /// The token's `expires_at` has passed.
    Expired,
}

impl Refusal {
    /// The response text.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "401 Unauthorized: send the token as \"Authorization: Bearer <token>\""
            }
            Refusal::Unknown => "401 Unauthorized: unknown or revoked token",
            Refusal::Expired => "401 Unauthorized: the token has expired",
        }
    }
}

/// The tokens loaded for serving, by hash.
#[derive(Debug, Default)]
pub(crate) struct TokenSet {
    by_hash: HashMap<String, Entry>,
}

impl TokenSet {
    /// The tokens of a file.
    pub(crate) fn new(file: TokenFile) -> TokenSet {
        TokenSet {
            by_hash: file
                .tokens
                .into_iter()
                .map(|e| (e.sha256.clone(), e))
                .collect(),
        }
    }

    /// How many tokens there are.
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// The principal of a token's text, at time `now` (ms).
    ///
    /// # Errors
    /// Unknown or expired token.
    pub(crate) fn authenticate(&self, token: &str, now: i64) -> Result<Principal, Refusal> {
        let entry = self.by_hash.get(&hash(token)).ok_or(Refusal::Unknown)?;
        if entry.expires_at.is_some_and(|t| t <= now) {
            return Err(Refusal::Expired);
        }
        Ok(Principal {
            name: entry.name.clone(),
            read: entry.read.clone(),
            write: entry.write.clone(),
            admin: entry.admin,
        })
    }
}

/// SHA-256 of a token's text, lowercase hex.
pub(crate) fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a tokens file.
///
/// # Errors
/// The file cannot be read or is not a valid tokens file (the message says where).
pub(crate) fn load(path: &Path) -> Result<TokenFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
    let file: TokenFile = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a valid tokens file: {e}", path.display()))?;
    if file.version != VERSION {
        return Err(format!(
            "{}: tokens file version {} (this subcog reads version {VERSION})",
            path.display(),
            file.version
        ));
    }
    let mut names = std::collections::HashSet::new();
    for e in &file.tokens {
        check_name(&e.name).map_err(|m| format!("{}: {m}", path.display()))?;
        if !names.insert(e.name.as_str()) {
            return Err(format!(
                "{}: the name {:?} appears twice",
                path.display(),
                e.name
            ));
        }
        if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{}: token {:?}: sha256 must be 64 hex digits",
                path.display(),
                e.name
            ));
        }
    }
    Ok(file)
}

/// Reads a tokens file, or an empty one when it does not exist yet.
fn load_or_new(path: &Path) -> Result<TokenFile, String> {
    if path.exists() {
        load(path)
    } else {
        Ok(TokenFile {
            version: VERSION,
            tokens: Vec::new(),
        })
    }
}

/// Writes a tokens file (temporary file, mode 0600, then rename).
fn save(path: &Path, file: &TokenFile) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(file)
        .map_err(|e| format!("cannot encode the tokens file: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    }
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write the tokens file {}: {e}", path.display()))
}

/// Checks a token name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "token name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// A new random token: [`PREFIX`] and 32 bytes from the kernel's generator, in hex.
fn generate() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read random bytes from /dev/urandom: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{PREFIX}{hex}"))
}

/// Parses a duration: a number of seconds, or a number with `s`, `m`, `h`, `d` or `w`.
fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let secs: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => 0,
    };
    let n: u64 = num.trim().parse().unwrap_or(0);
    if secs == 0 || n == 0 {
        return Err(format!(
            "--expires {text:?}: give a duration such as 3600, 12h, 30d or 2w"
        ));
    }
    n.checked_mul(secs)
        .and_then(|s| s.checked_mul(1000))
        .and_then(|ms| i64::try_from(ms).ok())
        .ok_or_else(|| format!("--expires {text:?}: too long"))
}

/// `subcog token add`: creates a token, saves its hash, and returns its text.
///
/// # Errors
/// Bad name or scopes, a name already taken, or the file cannot be read or written.
pub(crate) fn add(
    path: &Path,
    name: &str,
    read: Option<&str>,
    write: Option<&str>,
    admin: bool,
    expires: Option<&str>,
) -> Result<String, String> {
    check_name(name)?;
    let write_scope = match write {
        Some(w) => Scope::parse_list(w).map_err(|e| format!("--write: {e}"))?,
        None => Scope::Only(Default::default()),
    };
    // Without --read, a token reads what it writes.
    let read_scope = match read {
        Some(r) => Scope::parse_list(r).map_err(|e| format!("--read: {e}"))?,
        None => write_scope.clone(),
    };
    if read.is_none() && write.is_none() && !admin {
        return Err(
            "give --read and/or --write (namespaces, comma-separated; * = every \
                    namespace)"
                .into(),
        );
    }
    let now = subcog::row::now_ms();
    let expires_at = match expires {
        Some(e) => Some(now.saturating_add(parse_duration_ms(e)?)),
        None => None,
    };
    let mut file = load_or_new(path)?;
    if file.tokens.iter().any(|e| e.name == name) {
        return Err(format!(
            "a token named {name:?} exists already (subcog token revoke {name} first)"
        ));
    }
    let token = generate()?;
    file.tokens.push(Entry {
        name: name.to_string(),
        sha256: hash(&token),
        read: read_scope,
        write: write_scope,
        admin,
        created_at: now,
        expires_at,
    });
    save(path, &file)?;
    Ok(token)
}

/// `subcog token list`: one line per token (never the token or its hash).
///
/// # Errors
/// The file cannot be read.
pub(crate) fn list(path: &Path) -> Result<Vec<String>, String> {
    let file = load(path)?;
    let now = subcog::row::now_ms();
    Ok(file
        .tokens
        .iter()
        .map(|e| {
            let expiry = match e.expires_at {
                None => String::new(),
                Some(t) if t <= now => "  EXPIRED".into(),
                Some(t) => format!("  expires in {} h", (t - now) / 3_600_000),
            };
            format!(
                "{}  read={}  write={}{}{}",
                e.name,
                e.read,
                e.write,
                if e.admin { "  admin" } else { "" },
                expiry
            )
        })
        .collect())
}

/// `subcog token revoke`: removes a token by name.
///
/// # Errors
/// No token of that name, or the file cannot be read or written.
pub(crate) fn revoke(path: &Path, name: &str) -> Result<(), String> {
    let mut file = load(path)?;
    let before = file.tokens.len();
    file.tokens.retain(|e| e.name != name);
    if file.tokens.len() == before {
        return Err(format!("no token named {name:?} in {}", path.display()));
    }
    save(path, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("1w"), Ok(604_800_000));
        assert!(parse_duration_ms("x").is_err());
        assert!(parse_duration_ms("3y").is_err());
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("99999999999999999w").is_err());
    }

    #[test]
    fn add_authenticate_revoke() {
        let dir = std::env::temp_dir().join(format!("subcog-tokens-{}", std::process::id()));
        let path = dir.join("tokens.json");
        let _ = std::fs::remove_file(&path);
        let token = add(&path, "alice", Some("a,b"), Some("a"), false, None).unwrap_or_default();
        assert!(token.starts_with(PREFIX) && token.len() == PREFIX.len() + 64);
        assert!(add(&path, "alice", None, Some("a"), false, None).is_err());
        let set = TokenSet::new(load(&path).unwrap_or_default());
        let p = set.authenticate(&token, 0);
        assert!(
            p.as_ref()
                .is_ok_and(|p| p.name == "alice" && p.read.allows("b"))
        );
        assert_eq!(set.authenticate("sct_nope", 0), Err(Refusal::Unknown));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!text.contains(&token), "the file holds the token itself");
        assert!(revoke(&path, "alice").is_ok());
        assert!(revoke(&path, "alice").is_err());
        let set = TokenSet::new(load(&path).unwrap_or_default());
        assert_eq!(set.authenticate(&token, 0), Err(Refusal::Unknown));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! PLACEHOLDER until the redact branch is merged (same API).
use crate::error::{Error, Result};

/// Policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretPolicy {
    /// Redact.
    #[default]
    Redact,
    /// Reject.
    Reject,
    /// Allow.
    Allow,
}
impl SecretPolicy {
    /// Parse.
    pub fn parse(v: &str) -> Result<Self> {
        match v.to_ascii_lowercase().as_str() {
            "redact" => Ok(Self::Redact),
            "reject" => Ok(Self::Reject),
            "allow" => Ok(Self::Allow),
            _ => Err(Error::invalid(format!(
                "memories option secrets: expected redact, reject or allow, got '{v}'"
            ))),
        }
    }
    /// Name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Redact => "redact",
            Self::Reject => "reject",
            Self::Allow => "allow",
        }
    }
}
/// Finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Kind.
    pub kind: &'static str,
    /// Start.
    pub start: usize,
    /// End.
    pub end: usize,
}
/// Scan.
pub fn scan(_text: &str) -> Vec<Finding> {
    Vec::new()
}
/// Redact.
pub fn redact(text: &str) -> (String, Vec<Finding>) {
    (text.to_string(), Vec::new())
}
/// Redact JSON.
pub fn redact_json(json: &str) -> Result<(String, Vec<Finding>)> {
    Ok((json.to_string(), Vec::new()))
}

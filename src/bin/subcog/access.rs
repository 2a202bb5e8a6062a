//! Who is calling and which namespaces they may read and write: the [`Principal`] that
//! `subcog serve` attaches to every authenticated HTTP request, and that the MCP tools
//! check before they read or change a memory. Over stdio there is no principal: the
//! local user has the whole database ([`Principal::local`]).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A set of namespaces: every namespace (`*`), or the ones listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every namespace (written `*`).
    All,
    /// Only these namespaces (possibly none).
    Only(BTreeSet<String>),
}

impl Scope {
    /// Whether `namespace` is in the scope.
    pub(crate) fn allows(&self, namespace: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(set) => set.contains(namespace),
        }
    }

    /// Parses a comma-separated list (`a,b` or `*`); empty items are errors, and `*` may
    /// not be mixed with names.
    ///
    /// # Errors
    /// An empty item, or `*` together with names.
    pub(crate) fn parse_list(text: &str) -> Result<Scope, String> {
        let items: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
        Scope::from_items(items)
    }

    /// The scope of a list of names (`["*"]` is every namespace).
    ///
    /// # Errors
    /// An empty name, or `*` together with names.
    pub(crate) fn from_items(items: Vec<String>) -> Result<Scope, String> {
        if items.iter().any(String::is_empty) {
            return Err("a namespace in the list is empty".into());
        }
        if items.iter().any(|s| s == "*") {
            if items.len() > 1 {
                return Err("\"*\" (every namespace) cannot be combined with names".into());
            }
            return Ok(Scope::All);
        }
        Ok(Scope::Only(items.into_iter().collect()))
    }

    /// The list form: `["*"]` or the names, sorted.
    pub(crate) fn items(&self) -> Vec<String> {
        match self {
            Scope::All => vec!["*".into()],
            Scope::Only(set) => set.iter().cloned().collect(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Only(set) if set.is_empty() => f.write_str("(none)"),
            s => f.write_str(&s.items().join(",")),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.items().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        Scope::from_items(items).map_err(serde::de::Error::custom)
    }
}

/// The caller of a tool: a token's name and scopes, or the local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The token's name (what the logs show), or `local`.
    pub(crate) name: String,
    /// Namespaces whose memories the caller may see.
    pub(crate) read: Scope,
    /// Namespaces the caller may store into and whose memories it may change.
    pub(crate) write: Scope,
    /// Admin tokens see `memory_stats` for the whole database, and may use the tools that
    /// change or fork the whole table (`memory_restore`, `memory_snapshot` drop,
    /// `memory_branch`, `memory_merge`).
    pub(crate) admin: bool,
}

impl Principal {
    /// The local user (stdio, or `serve` on a loopback address without a tokens file):
    /// every namespace, admin.
    pub(crate) fn local() -> Principal {
        Principal {
            name: "local".into(),
            read: Scope::All,
            write: Scope::All,
            admin: true,
        }
    }

    /// Whether the caller sees every namespace.
    pub(crate) fn reads_all(&self) -> bool {
        self.read == Scope::All
    }

    /// `Ok` when the caller may read `namespace`, else the "forbidden" message.
    ///
    /// # Errors
    /// The namespace is outside the read scope.
    pub(crate) fn check_read(&self, namespace: &str) -> Result<(), String> {
        if self.read.allows(namespace) {
            Ok(())
        } else {
            Err(forbidden(&self.name, "read", namespace, &self.read))
        }
    }

    /// `Ok` when the caller may write `namespace`, else the "forbidden" message.
    ///
    /// # Errors
    /// The namespace is outside the write scope.
    pub(crate) fn check_write(&self, namespace: &str) -> Result<(), String> {
        if self.write.allows(namespace) {
            Ok(())
        } else {
            Err(forbidden(&self.name, "write", namespace, &self.write))
        }
    }

    /// `Ok` for an admin caller that writes every namespace, else the "forbidden"
    /// message naming `what` (the tools that change or fork every namespace at once).
    ///
    /// # Errors
    /// The caller is not an admin, or does not write every namespace.
    pub(crate) fn check_admin(&self, what: &str) -> Result<(), String> {
        if self.admin && self.write == Scope::All {
            Ok(())
        } else {
            Err(format!(
                "forbidden: token {:?} may not {what}: that changes every namespace of the \
                 table and needs an admin token that writes every namespace (`subcog token \
                 add --admin --write '*'`)",
                self.name
            ))
        }
    }

    /// `Ok` when the caller may write some namespace (a token that only reads may not
    /// create snapshots), else the "forbidden" message.
    ///
    /// # Errors
    /// The write scope is empty.
    pub(crate) fn check_writes_any(&self, what: &str) -> Result<(), String> {
        match &self.write {
            Scope::Only(set) if set.is_empty() => Err(format!(
                "forbidden: token {:?} may not {what}: it may write no namespace",
                self.name
            )),
            _ => Ok(()),
        }
    }

    /// Whether a memory of `namespace` exists at all for this caller (in its read or
    /// write scope); one that does not is reported exactly as a missing id.
    pub(crate) fn sees(&self, namespace: &str) -> bool {
        self.read.allows(namespace) || self.write.allows(namespace)
    }
}

/// The message for a namespace outside a scope (the MCP equivalent of HTTP 403).
fn forbidden(name: &str, what: &str, namespace: &str, scope: &Scope) -> String {
    format!(
        "forbidden: token {name:?} may not {what} namespace {namespace:?} (it may {what}: {scope})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists() {
        assert_eq!(Scope::parse_list("*"), Ok(Scope::All));
        let s = Scope::parse_list("b, a").unwrap_or(Scope::All);
        assert!(s.allows("a") && s.allows("b") && !s.allows("c"));
        assert_eq!(s.to_string(), "a,b");
        assert!(Scope::parse_list("a,,b").is_err());
        assert!(Scope::parse_list("*,a").is_err());
        assert!(Scope::parse_list("").is_err());
    }

    #[test]
    fn principal_checks() {
        let p = Principal {
            name: "t".into(),
            read: Scope::parse_list("a,b").unwrap_or(Scope::All),
            write: Scope::parse_list("a").unwrap_or(Scope::All),
            admin: false,
        };
        assert!(p.check_read("b").is_ok());
        assert!(
            p.check_write("b")
                .is_err_and(|e| e.starts_with("forbidden:"))
        );
        assert!(p.sees("a") && !p.sees("c"));
        assert!(Principal::local().reads_all());
        assert!(Principal::local().check_admin("restore").is_ok());
        assert!(
            p.check_admin("restore")
                .is_err_and(|e| e.starts_with("forbidden:") && e.contains("admin"))
        );
        assert!(p.check_writes_any("create a snapshot").is_ok());
        let ro = Principal {
            write: Scope::Only(BTreeSet::new()),
            ..p
        };
        assert!(
            ro.check_writes_any("create a snapshot")
                .is_err_and(|e| e.starts_with("forbidden:"))
        );
    }
}

//! Storage keys and the partitions scopes map to.
//!
//! A key is a relative path of `/`-separated segments. Anything that could mean something else in
//! another backend (a filesystem, an object store) is refused rather than rewritten, so a node can
//! never name a key outside the partition of its scope.

use crate::node::context::RunContext;

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The most `/`-separated segments in a key.
pub const MAX_KEY_SEGMENTS: usize = 32;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty; name a key such as `settings/theme`")]
    Empty,
    #[error("the key `{0}` is absolute; keys are relative to their scope, drop the leading `/`")]
    Absolute(String),
    #[error("the key `{0}` has a `.` or `..` segment; keys cannot leave or re-enter their scope")]
    DotSegment(String),
    #[error("the key `{0}` has an empty segment (`//` or a trailing `/`)")]
    EmptySegment(String),
    #[error("the key contains a NUL or another control character")]
    ControlCharacter,
    #[error("the key `{0}` contains `\\`; separate segments with `/`")]
    Backslash(String),
    #[error("the key is {0} bytes long; keys are at most {MAX_KEY_BYTES} bytes")]
    TooLong(usize),
    #[error("the key has {0} segments; keys have at most {MAX_KEY_SEGMENTS}")]
    TooDeep(usize),
}

/// Checks that `key` is a clean relative path and returns it.
pub fn validate_key(key: &str) -> Result<&str, KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(key.len()));
    }
    if key.chars().any(char::is_control) {
        return Err(KeyError::ControlCharacter);
    }
    if key.contains('\\') {
        return Err(KeyError::Backslash(key.to_string()));
    }
    if key.starts_with('/') {
        return Err(KeyError::Absolute(key.to_string()));
    }
    let mut segments = 0;
    for segment in key.split('/') {
        segments += 1;
        match segment {
            "" => return Err(KeyError::EmptySegment(key.to_string())),
            "." | ".." => return Err(KeyError::DotSegment(key.to_string())),
            _ => {}
        }
    }
    if segments > MAX_KEY_SEGMENTS {
        return Err(KeyError::TooDeep(segments));
    }
    Ok(key)
}

/// Checks a listing prefix: empty (everything) or a key, with an optional trailing `/`.
/// Returns the prefix keys must start with.
pub fn validate_prefix(prefix: &str) -> Result<String, KeyError> {
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    Ok(format!("{}/", validate_key(trimmed)?))
}

/// The storage scopes, mirroring the WIT `scope` enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Board,
    Node,
    User,
    Upload,
    Cache,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Board => "board",
            Scope::Node => "node",
            Scope::User => "user",
            Scope::Upload => "upload",
            Scope::Cache => "cache",
        }
    }

    /// Nodes may read the upload scope but never change it: only the embedder puts files there.
    pub fn writable_by_nodes(self) -> bool {
        self != Scope::Upload
    }

    /// The partition of this scope for a run. Run-context ids never contain NUL (they are
    /// validated when the context is built), so NUL-separated parts cannot collide.
    pub fn partition(self, context: &RunContext) -> String {
        match self {
            Scope::Board => join(&["board", &context.app_id, &context.board_id]),
            Scope::Node => join(&[
                "node",
                &context.app_id,
                &context.board_id,
                &context.node_instance_id,
            ]),
            Scope::User => join(&["user", &context.user_id]),
            Scope::Upload => join(&["upload", &context.user_id]),
            Scope::Cache => join(&[
                "cache",
                &context.app_id,
                &context.board_id,
                &context.node_instance_id,
            ]),
        }
    }
}

/// The partition of an execution-cache entry: the board, and the node and the user when asked.
pub fn cache_partition(context: &RunContext, per_node: bool, per_user: bool) -> String {
    let mut parts = vec![
        "exec-cache",
        context.app_id.as_str(),
        context.board_id.as_str(),
    ];
    parts.push(if per_node {
        context.node_instance_id.as_str()
    } else {
        ""
    });
    parts.push(if per_user {
        context.user_id.as_str()
    } else {
        ""
    });
    join(&parts)
}

fn join(parts: &[&str]) -> String {
    parts.join("\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_keys_pass() {
        for key in [
            "a",
            "settings/theme",
            "a.b/c-d_e",
            "…/unicode/ключ",
            "x/.hidden",
        ] {
            assert_eq!(validate_key(key), Ok(key));
        }
    }

    #[test]
    fn every_escape_is_refused() {
        assert_eq!(validate_key(""), Err(KeyError::Empty));
        assert!(matches!(
            validate_key("/etc/passwd"),
            Err(KeyError::Absolute(_))
        ));
        assert!(matches!(validate_key(".."), Err(KeyError::DotSegment(_))));
        assert!(matches!(
            validate_key("a/../../b"),
            Err(KeyError::DotSegment(_))
        ));
        assert!(matches!(validate_key("./a"), Err(KeyError::DotSegment(_))));
        assert!(matches!(
            validate_key("a//b"),
            Err(KeyError::EmptySegment(_))
        ));
        assert!(matches!(validate_key("a/"), Err(KeyError::EmptySegment(_))));
        assert_eq!(validate_key("a\0b"), Err(KeyError::ControlCharacter));
        assert_eq!(validate_key("a\nb"), Err(KeyError::ControlCharacter));
        assert!(matches!(
            validate_key("..\\windows"),
            Err(KeyError::Backslash(_))
        ));
        assert_eq!(
            validate_key(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(KeyError::TooLong(MAX_KEY_BYTES + 1))
        );
        assert!(validate_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert_eq!(
            validate_key(&["s"; MAX_KEY_SEGMENTS + 1].join("/")),
            Err(KeyError::TooDeep(MAX_KEY_SEGMENTS + 1))
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(validate_prefix(""), Ok(String::new()));
        assert_eq!(validate_prefix("a/b"), Ok("a/b/".to_string()));
        assert_eq!(validate_prefix("a/b/"), Ok("a/b/".to_string()));
        assert!(validate_prefix("/").is_err());
        assert!(validate_prefix("../").is_err());
    }

    #[test]
    fn scopes_partition_by_their_owner() {
        let base = RunContext::for_node("n1").with_board("b1").with_user("u1");
        let other_node = RunContext::for_node("n2").with_board("b1").with_user("u1");
        let other_board = RunContext::for_node("n1").with_board("b2").with_user("u1");
        let other_user = RunContext::for_node("n1").with_board("b1").with_user("u2");
        assert_eq!(
            Scope::Board.partition(&base),
            Scope::Board.partition(&other_node)
        );
        assert_ne!(
            Scope::Board.partition(&base),
            Scope::Board.partition(&other_board)
        );
        assert_ne!(
            Scope::Node.partition(&base),
            Scope::Node.partition(&other_node)
        );
        assert_eq!(
            Scope::User.partition(&base),
            Scope::User.partition(&other_node)
        );
        assert_ne!(
            Scope::User.partition(&base),
            Scope::User.partition(&other_user)
        );
        assert_ne!(Scope::Upload.partition(&base), Scope::User.partition(&base));
        assert_ne!(Scope::Cache.partition(&base), Scope::Node.partition(&base));
        assert_ne!(
            cache_partition(&base, true, false),
            cache_partition(&other_node, true, false)
        );
        assert_eq!(
            cache_partition(&base, false, false),
            cache_partition(&other_node, false, false)
        );
        assert_ne!(
            cache_partition(&base, false, true),
            cache_partition(&other_user, false, true)
        );
    }
}

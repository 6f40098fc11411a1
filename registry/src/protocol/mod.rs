//! What the registry signs and what hosts verify: the index of everything it serves, the
//! hash-chained log, and the statements that add or rotate a publisher's key.
//!
//! Each signed document travels as the exact JSON text that was signed plus a signature over a
//! domain string and that text, so no re-serialization can change what a signature covers and
//! a signature made for one kind of document never verifies as another.
//!
//! The files split it by concern, and its items are one API (`protocol::Index`, ...):
//! - `signed`: the envelope (a document's exact text and a signature over it) and hashing;
//! - `index`: the signed index; `root`: the root of trust and the registry's identity;
//! - `log` and `replay`: the hash-chained log, and the state it describes;
//! - `statements`: what publisher keys sign (rotation, possession, revocation);
//! - `paging`: the sizes hosts read and registries serve; `tokens`: how a request presents
//!   its token.

mod error;
mod index;
mod log;
mod paging;
mod replay;
mod root;
mod signed;
mod statements;
#[cfg(test)]
mod test_support;
mod tokens;

/// The key type that signs statements; re-exported for callers that sign them.
pub use ed25519_dalek::SigningKey;
pub use error::{KeyEventError, ProtocolError};
pub use index::{Index, IndexEntry, KeyEntry};
pub use log::{Event, LOG_ROOT, LogEntry, verify_log, verify_page};
pub use paging::{
    DEFAULT_MAX_PACKAGE_BYTES, MAX_INDEX_BYTES, MAX_LOG_BYTES, MAX_LOG_PAGE_BYTES,
    MAX_LOG_PAGE_ENTRIES,
};
pub use replay::{Published, Replayed, index_matches_log, replay, voided_by_revocation};
pub use root::{Root, RootSignature, SignedRoot, registry_id};
pub use signed::{Signed, now, sha256_hex};
pub use statements::{
    key_statement, possession_statement, revocation_statement, sign_key_statement, sign_possession,
    sign_revocation, verify_key_statement, verify_possession, verify_revocation,
    verifying_key_from_hex,
};
pub use tokens::TokenKind;

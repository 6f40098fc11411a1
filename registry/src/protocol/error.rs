//! What fails when a signed document or the log does not verify.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("the {0} is malformed: {1}")]
    Malformed(&'static str, String),
    #[error("the {0} signature does not verify with the registry's key")]
    BadSignature(&'static str),
    #[error("the index expired at {expired} (now {now}); the registry may be frozen or replayed")]
    Expired { expired: u64, now: u64 },
    #[error("the log does not chain: {0}")]
    BrokenLog(String),
    /// A key event replay refuses; `sequence` is its entry's.
    #[error("the log does not chain: entry {sequence}: {reason}")]
    BadKeyEvent {
        sequence: u64,
        #[source]
        reason: KeyEventError,
    },
    #[error("the registry's root {0}")]
    BadRoot(String),
}

impl ProtocolError {
    /// A key event of the log that replay refuses, at entry `sequence`.
    pub(super) fn key_event(sequence: u64, reason: KeyEventError) -> ProtocolError {
        ProtocolError::BadKeyEvent { sequence, reason }
    }
}

/// Why replay refuses a key event of the log (an added or a revoked key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyEventError {
    #[error("a key is added twice")]
    AddedTwice,
    #[error(
        "{key} was added to `{publisher}` without its own signature proving possession for this registry"
    )]
    NoPossession { publisher: String, key: String },
    #[error("the rotation to {key} is not signed by a current key of `{publisher}`")]
    RotationNotSigned { publisher: String, key: String },
    #[error("{key} was added to `{publisher}` without a current key's signature")]
    AddedUnsigned { publisher: String, key: String },
    #[error("revokes {key}, which is not a current key of `{publisher}`")]
    NotCurrent { publisher: String, key: String },
    #[error("the revocation of {key} is not signed by another current key of `{publisher}`")]
    RevocationNotSigned { publisher: String, key: String },
    #[error(
        "revokes {key} back to {revoked_at}, before the entry's time {time}, without another current key's signature or an admin's mark"
    )]
    BackDatedUnsigned {
        key: String,
        revoked_at: u64,
        time: u64,
    },
}

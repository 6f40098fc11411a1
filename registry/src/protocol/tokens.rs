//! How a request presents its token, which both halves agree on: an API key (`X-API-Key`, for
//! technical users such as CI pipelines) or a personal access token (`Authorization: PAT ...`,
//! for people), told apart by their prefix.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenKind {
    /// `X-API-Key`, for technical users.
    ApiKey,
    /// `Authorization: PAT`, for people.
    Pat,
}

impl TokenKind {
    /// What every token of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::ApiKey => "wdn_key_",
            TokenKind::Pat => "wdn_pat_",
        }
    }
}

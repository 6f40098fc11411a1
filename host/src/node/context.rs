//! The run context: who and what a run belongs to.

/// The longest id accepted in a run context, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Ids of the run. Storage partitions derive from them, so they are validated before any run.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RunContext {
    pub run_id: String,
    pub app_id: String,
    pub board_id: String,
    pub node_instance_id: String,
    pub user_id: String,
    pub event_id: String,
}

/// A run-context id that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the run context's {field} is invalid: {reason}")]
pub struct InvalidContext {
    pub field: &'static str,
    pub reason: &'static str,
}

impl RunContext {
    /// A context for a local run of one node instance: app `local`, board `default`, user `local`.
    pub fn for_node(node_instance_id: &str) -> Self {
        RunContext {
            run_id: String::new(),
            app_id: "local".into(),
            board_id: "default".into(),
            node_instance_id: node_instance_id.into(),
            user_id: "local".into(),
            event_id: String::new(),
        }
    }

    pub fn with_board(mut self, board_id: &str) -> Self {
        self.board_id = board_id.into();
        self
    }

    pub fn with_user(mut self, user_id: &str) -> Self {
        self.user_id = user_id.into();
        self
    }

    /// Refuses ids that are empty where storage needs them, too long, or hold control characters.
    pub fn validate(&self) -> Result<(), InvalidContext> {
        let fields = [
            ("run id", &self.run_id, false),
            ("app id", &self.app_id, true),
            ("board id", &self.board_id, true),
            ("node instance id", &self.node_instance_id, true),
            ("user id", &self.user_id, true),
            ("event id", &self.event_id, false),
        ];
        for (field, value, required) in fields {
            if required && value.is_empty() {
                return Err(InvalidContext {
                    field,
                    reason: "it is empty",
                });
            }
            if value.len() > MAX_ID_BYTES {
                return Err(InvalidContext {
                    field,
                    reason: "it is longer than 256 bytes",
                });
            }
            if value.chars().any(char::is_control) {
                return Err(InvalidContext {
                    field,
                    reason: "it contains a NUL or another control character",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(RunContext::for_node("n").validate().is_ok());
        assert_eq!(
            RunContext::for_node("").validate().unwrap_err().field,
            "node instance id"
        );
        assert!(RunContext::for_node("a\0b").validate().is_err());
        assert!(
            RunContext::for_node("n")
                .with_user(&"u".repeat(300))
                .validate()
                .is_err()
        );
    }
}

//! What a command did, in the store's terms.

use uuid::Uuid;

/// What a command did: the store's typed record of it, kept under its
/// idempotency key too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The stream (aggregate id).
    pub stream_id: Uuid,
    /// The stream's version after the command.
    pub version: i64,
    /// Position of the stream's last event (read-your-writes token).
    pub position: i64,
    /// How many events the command appended (0 for a no-op): they are the
    /// stream's versions `version - appended + 1 ..= version`.
    pub appended: usize,
}

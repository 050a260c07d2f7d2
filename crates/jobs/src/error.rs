//! The one error type of the async side's tables.

/// Why an operation on jobs, webhooks or reports failed.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The named thing does not exist in the tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Only a dead letter (a job that used up its attempts) can be re-driven.
    #[error("the job is not a dead letter")]
    JobNotDead,
    /// The job's arguments or metadata could not be encoded.
    #[error("cannot encode the job: {0}")]
    Encode(String),
    /// A stored value is not one this code knows (a status, a log).
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The queue refused a push for a reason other than the database.
    #[error("the job queue refused the job: {0}")]
    Queue(String),
    /// The database is unreachable, overloaded or timed out: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for JobsError {
    fn from(error: sqlx::Error) -> Self {
        if muster_store::db::is_unavailable(&error) {
            JobsError::Unavailable(error)
        } else {
            JobsError::Database(error)
        }
    }
}

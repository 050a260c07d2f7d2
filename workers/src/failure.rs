//! Why a job attempt failed, and whether another attempt may succeed.

use muster_jobs::JobsError;
use muster_store::StoreError;

/// How a job attempt ended when it did not succeed.
#[derive(Debug)]
pub(crate) enum JobFailure {
    /// May succeed later: retried with backoff while attempts remain.
    Retry(Cause),
    /// Will not succeed: dead-lettered now.
    Fatal(Cause),
}

impl JobFailure {
    /// Why it failed.
    pub(crate) fn cause(&self) -> &Cause {
        match self {
            JobFailure::Retry(cause) | JobFailure::Fatal(cause) => cause,
        }
    }
}

/// Why a job attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Cause {
    /// The job's subject (a deployment, a delivery, a report) is gone.
    #[error("the {0} does not exist")]
    Missing(&'static str),
    /// Another worker holds the subject's lease (a rescue handed the job to
    /// a second worker while the first still runs it).
    #[error("another worker is working on this {0}")]
    Leased(&'static str),
    /// A deployment step failed; it has attempts left.
    #[error("step {step}: {error}")]
    StepFailed {
        /// The step.
        step: String,
        /// Why.
        error: String,
    },
    /// A deployment step used up its attempts; the deployment failed.
    #[error("step {step} failed after {attempts} attempts: {error}")]
    StepExhausted {
        /// The step.
        step: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// The target may not be called (private, malformed, no SMTP relay).
    #[error("{0}")]
    TargetRefused(String),
    /// The receiver or relay did not take the delivery.
    #[error("{0}")]
    Undelivered(String),
    /// The application refused what the job recorded (a race it may win
    /// next time).
    #[error("refused: {0}")]
    Refused(muster_app::Refusal),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The async side's tables failed.
    #[error(transparent)]
    Jobs(#[from] JobsError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<StoreError> for JobFailure {
    fn from(e: StoreError) -> Self {
        JobFailure::Retry(e.into())
    }
}

impl From<muster_app::AppError> for JobFailure {
    fn from(e: muster_app::AppError) -> Self {
        match e {
            muster_app::AppError::Store(e) => e.into(),
            muster_app::AppError::Jobs(e) => e.into(),
            muster_app::AppError::Misconfigured(e) => JobFailure::Fatal(Cause::TargetRefused(e)),
        }
    }
}

impl From<JobsError> for JobFailure {
    fn from(e: JobsError) -> Self {
        JobFailure::Retry(e.into())
    }
}

impl From<sqlx::Error> for JobFailure {
    fn from(e: sqlx::Error) -> Self {
        JobFailure::Retry(e.into())
    }
}

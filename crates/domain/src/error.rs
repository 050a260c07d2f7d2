//! The one error type of the domain layer.

use serde::{Deserialize, Serialize};

/// One invalid input field, named by its JSON path (`reservations[0].ends_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON path of the offending field in the command's body.
    pub field: String,
    /// What is wrong with it, for a human.
    pub message: String,
}

impl FieldError {
    /// A field error for `field` with `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a command was refused by a business rule. Every variant is the
/// client's to fix (a 4xx); technical failures belong to other layers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command's fields are invalid; nothing was decided.
    #[error("invalid command: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// The aggregate does not exist (no `registered`/`requested` event yet).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The aggregate already exists; a create command cannot run twice.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// The command is not allowed in the aggregate's current state, such as
    /// confirming a cancelled booking or updating a retired resource.
    #[error("{0}")]
    InvalidTransition(String),
    /// The command names a child entity (reservation, task) the aggregate
    /// does not have.
    #[error("{0} not found")]
    UnknownChild(&'static str),
}

impl DomainError {
    /// A single-field validation error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects field errors so that a command reports all of them at once.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    /// Records `message` against `field` when `ok` is false.
    pub fn check(&mut self, ok: bool, field: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.errors.push(FieldError::new(field, message));
        }
    }

    /// Records an error unconditionally.
    pub fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    /// Checks a required, trimmed text field for emptiness and length.
    pub fn text(&mut self, value: &str, field: &str, max_chars: usize) {
        if value.trim().is_empty() {
            self.push(FieldError::new(field, "must not be empty"));
        } else if value.chars().count() > max_chars {
            self.push(FieldError::new(
                field,
                format!("must be at most {max_chars} characters"),
            ));
        }
    }

    /// `Ok(())` when nothing was recorded, else every error at once.
    pub fn finish(self) -> Result<(), DomainError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Invalid(self.errors))
        }
    }
}

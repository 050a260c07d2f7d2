//! The decide/evolve contract every aggregate follows.

use crate::{DomainError, DomainEvent};

/// An event-sourced aggregate: state is a left fold of `evolve` over its
/// events, and `decide` turns a command into new events without side effects.
pub trait Aggregate: Default + Clone {
    /// What the aggregate is asked to do.
    type Command;
    /// What it records.
    type Event: DomainEvent;

    /// The `stream_type` of this aggregate's streams in the event store.
    const STREAM_TYPE: &'static str;

    /// Applies one recorded event. Must never fail: recorded events are facts.
    fn evolve(&mut self, event: &Self::Event);

    /// Decides which events a command produces, or why it is refused.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, DomainError>;

    /// Folds a whole history into state.
    fn from_events<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        let mut state = Self::default();
        for event in events {
            state.evolve(event);
        }
        state
    }
}

/// Given/when/then for decisions: `given(history).when(command)` then assert
/// the events or the rejection.
#[cfg(test)]
pub(crate) mod harness {
    use super::Aggregate;
    use crate::DomainError;

    /// A history to decide against.
    pub(crate) fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
        let events: Vec<A::Event> = history.into_iter().collect();
        Given(A::from_events(events.iter()))
    }

    /// State folded from the history.
    pub(crate) struct Given<A>(pub A);

    impl<A: Aggregate> Given<A>
    where
        A::Event: std::fmt::Debug + PartialEq,
    {
        /// Decides `command` against the history.
        pub(crate) fn when(self, command: A::Command) -> Then<A> {
            let outcome = self.0.decide(command);
            Then(self.0, outcome)
        }
    }

    /// The outcome of a decision.
    pub(crate) struct Then<A: Aggregate>(A, Result<Vec<A::Event>, DomainError>);

    impl<A: Aggregate> Then<A>
    where
        A::Event: std::fmt::Debug + PartialEq,
    {
        /// Asserts the exact events and returns the state after them.
        #[track_caller]
        pub(crate) fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
            let expected: Vec<_> = expected.into_iter().collect();
            let events = self.1.expect("the command was refused");
            assert_eq!(events, expected);
            let mut state = self.0;
            for e in &events {
                state.evolve(e);
            }
            state
        }

        /// Asserts a rejection and returns it.
        #[track_caller]
        pub(crate) fn then_refused(self) -> DomainError {
            match self.1 {
                Ok(events) => panic!("expected a rejection, got {events:?}"),
                Err(e) => e,
            }
        }

        /// Asserts a validation rejection naming exactly these fields.
        #[track_caller]
        pub(crate) fn then_invalid(self, fields: &[&str]) {
            match self.then_refused() {
                DomainError::Invalid(errors) => {
                    let named: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                    assert_eq!(named, fields);
                }
                other => panic!("expected a validation error, got {other:?}"),
            }
        }
    }
}

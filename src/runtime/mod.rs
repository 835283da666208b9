//! Running the controllers as a replica among others: leader election with a fence for side effects.

pub mod lease;

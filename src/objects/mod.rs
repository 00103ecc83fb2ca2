//! The wire protocol and state of each Durable Object role, as plain Rust: the edge only moves
//! these values between the Worker and the objects.

pub mod held;
#[cfg(test)]
mod lease_sim;
pub mod owned_responses;
pub mod usage_index;
pub mod user;

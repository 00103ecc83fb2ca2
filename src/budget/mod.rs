//! What requests may spend and what they spent: quota arithmetic, usage and cost, prices and
//! plans, alerts, settlements held for the next object call, and the operators' usage report.

pub mod alerts;
pub mod cost;
pub mod images;
pub mod lease;
pub mod money;
pub mod plans;
pub mod prices;
pub mod quota;
pub mod realtime;
pub mod usage;
pub mod usage_report;

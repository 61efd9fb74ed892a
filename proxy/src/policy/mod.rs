//! Decisions: who may reach which local port (`authorize`), and the policy a reload swaps in
//! whole while flows run (`live`: workload selectors, routes, HTTP rules, the deny list), and the index
//! that finds a destination's route (`routes`).
pub mod authorize;
pub mod live;
pub mod routes;

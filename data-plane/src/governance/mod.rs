//! Governance on the request path: distributed rate limits ([`limits`]).

pub mod limits;

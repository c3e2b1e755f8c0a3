//! podbgp: a BGP route-distribution speaker for Calico-style Kubernetes clusters.

pub mod api;
pub mod bench;
pub mod calico;
pub mod cli;
pub mod config;
pub mod datastore;
pub mod demo;
pub mod driver;
pub mod fib;
pub mod health;
pub mod lab;
pub mod metrics;
pub mod node;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod wire;

//! podbgp: a BGP route-distribution speaker for Calico-style Kubernetes clusters.

pub mod wire;

//! Calico's cluster model: typed v3 resources, the label-selector language, and the pure
//! derivation of a node's speaker configuration from them.

pub mod selector;

//! A small etcd v3 client (filled in by the etcd change).

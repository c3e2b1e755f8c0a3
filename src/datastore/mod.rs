//! Where the cluster view comes from: a YAML file of Calico resources, or etcd v3.

pub mod etcd;

//! Calico's cluster model: typed v3 resources, the label-selector language, and the pure
//! derivation of a node's speaker configuration from them.
//!
//! Data flows one way: a datastore (file or etcd) keeps a [`ClusterView`] up to date, and after
//! each change [`derive`] turns the view into this node's [`Derived`] configuration, which the
//! daemon applies as a diff. Nothing here does I/O.

pub mod derive;
pub mod model;
pub mod policy;
pub mod secret;
pub mod selector;

use std::collections::BTreeMap;

use ipnet::IpNet;

pub use derive::{
    DeriveError, DeriveOptions, Derived, PoolInfo, RouterIdMode, derive, derive_with_secrets,
};
pub use model::{
    BgpConfiguration, BgpPeer, BlockAffinity, IpPool, IpamBlock, Node, Resource, ResourceError,
};
pub use policy::{CalicoPolicy, ImportGuard};
pub use secret::{Secret, SecretSource};

/// Identity of a resource in a [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceId {
    Node(String),
    BgpConfiguration(String),
    BgpPeer(String),
    IpPool(String),
    /// `(node, block)`: one affinity per node and block, whatever the resource's name.
    BlockAffinity(String, IpNet),
    IpamBlock(IpNet),
    Secret(String),
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResourceId::Node(n) => write!(f, "Node {n:?}"),
            ResourceId::BgpConfiguration(n) => write!(f, "BGPConfiguration {n:?}"),
            ResourceId::BgpPeer(n) => write!(f, "BGPPeer {n:?}"),
            ResourceId::IpPool(n) => write!(f, "IPPool {n:?}"),
            ResourceId::BlockAffinity(n, c) => write!(f, "BlockAffinity {n}/{c}"),
            ResourceId::IpamBlock(c) => write!(f, "IPAMBlock {c}"),
            ResourceId::Secret(n) => write!(f, "Secret {n:?}"),
        }
    }
}

impl Resource {
    pub fn id(&self) -> ResourceId {
        match self {
            Resource::Node(n) => ResourceId::Node(n.name.clone()),
            Resource::BgpConfiguration(c) => ResourceId::BgpConfiguration(c.name.clone()),
            Resource::BgpPeer(p) => ResourceId::BgpPeer(p.name.clone()),
            Resource::IpPool(p) => ResourceId::IpPool(p.name.clone()),
            Resource::BlockAffinity(a) => ResourceId::BlockAffinity(a.node.clone(), a.cidr),
            Resource::IpamBlock(b) => ResourceId::IpamBlock(b.cidr),
            Resource::Secret(s) => ResourceId::Secret(s.name.clone()),
        }
    }
}

/// Everything the BGP rules read, by kind and name (sorted, so derivation is deterministic).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    pub nodes: BTreeMap<String, Node>,
    pub bgp_configs: BTreeMap<String, BgpConfiguration>,
    pub peers: BTreeMap<String, BgpPeer>,
    pub pools: BTreeMap<String, IpPool>,
    pub affinities: BTreeMap<(String, IpNet), BlockAffinity>,
    pub blocks: BTreeMap<IpNet, IpamBlock>,
    /// Kubernetes Secrets (BGP passwords) from the datastore.
    pub secrets: BTreeMap<String, Secret>,
}

impl ClusterView {
    /// Inserts or replaces a resource.
    pub fn upsert(&mut self, r: Resource) {
        match r {
            Resource::Node(n) => {
                self.nodes.insert(n.name.clone(), n);
            }
            Resource::BgpConfiguration(c) => {
                self.bgp_configs.insert(c.name.clone(), c);
            }
            Resource::BgpPeer(p) => {
                self.peers.insert(p.name.clone(), p);
            }
            Resource::IpPool(p) => {
                self.pools.insert(p.name.clone(), p);
            }
            Resource::BlockAffinity(a) => {
                self.affinities.insert((a.node.clone(), a.cidr), a);
            }
            Resource::IpamBlock(b) => {
                self.blocks.insert(b.cidr, b);
            }
            Resource::Secret(s) => {
                self.secrets.insert(s.name.clone(), s);
            }
        }
    }

    /// Removes a resource; `false` when it was not there.
    pub fn remove(&mut self, id: &ResourceId) -> bool {
        match id {
            ResourceId::Node(n) => self.nodes.remove(n).is_some(),
            ResourceId::BgpConfiguration(n) => self.bgp_configs.remove(n).is_some(),
            ResourceId::BgpPeer(n) => self.peers.remove(n).is_some(),
            ResourceId::IpPool(n) => self.pools.remove(n).is_some(),
            ResourceId::BlockAffinity(n, c) => self.affinities.remove(&(n.clone(), *c)).is_some(),
            ResourceId::IpamBlock(c) => self.blocks.remove(c).is_some(),
            ResourceId::Secret(n) => self.secrets.remove(n).is_some(),
        }
    }

    /// Number of resources held.
    pub fn len(&self) -> usize {
        self.nodes.len()
            + self.bgp_configs.len()
            + self.peers.len()
            + self.pools.len()
            + self.affinities.len()
            + self.blocks.len()
            + self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

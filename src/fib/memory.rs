//! An in-memory [`Fib`] that records every batch, for core tests: the same ownership rules as
//! the kernel adapter (one route per prefix; a prefix held by another protocol is neither
//! replaced nor deleted), plus injected failures.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;

use super::{Fib, FibConfig, FibError, FibOp, FibRoute, KernelTable, RouteKind};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct MemoryFib {
    cfg: FibConfig,
    /// Prefix → (protocol, route): the whole table, other protocols' routes included.
    table: BTreeMap<IpNet, (u8, FibRoute)>,
    batches: Vec<Vec<FibOp>>,
    failures: HashMap<IpNet, FibError>,
}

impl MemoryFib {
    pub fn new(cfg: FibConfig) -> MemoryFib {
        MemoryFib {
            cfg,
            ..MemoryFib::default()
        }
    }

    /// Puts a route of another protocol in the table (as `ip route add … proto static`).
    pub fn add_foreign(&mut self, route: FibRoute, protocol: u8) {
        self.table.insert(route.prefix, (protocol, route));
    }

    /// Makes the next operation on `prefix` fail with `error` (once).
    pub fn fail_next(&mut self, prefix: IpNet, error: FibError) {
        self.failures.insert(prefix, error);
    }

    /// Every batch applied so far, in order.
    pub fn batches(&self) -> &[Vec<FibOp>] {
        &self.batches
    }

    /// The whole table: (protocol, route), by prefix.
    pub fn table(&self) -> impl Iterator<Item = (u8, &FibRoute)> {
        self.table.values().map(|(p, r)| (*p, r))
    }

    fn apply_one(&mut self, op: &FibOp) -> Result<(), FibError> {
        let prefix = op.prefix();
        if let Some(e) = self.failures.remove(&prefix) {
            return Err(e);
        }
        let owner = self.table.get(&prefix).map(|(p, _)| *p);
        match op {
            FibOp::Add(_) if owner.is_some() => Err(FibError::Exists),
            FibOp::Add(route) | FibOp::Replace(route) => {
                match &route.kind {
                    RouteKind::Unicast { nexthops } if nexthops.is_empty() => {
                        return Err(FibError::Invalid("unicast route without next hops"));
                    }
                    RouteKind::Other { .. } => {
                        return Err(FibError::Invalid("podbgp never installs this route type"));
                    }
                    _ => {}
                }
                match owner {
                    Some(p) if p != self.cfg.protocol => {
                        Err(FibError::ForeignRoute { protocol: p })
                    }
                    _ => {
                        self.table
                            .insert(prefix, (self.cfg.protocol, route.clone()));
                        Ok(())
                    }
                }
            }
            FibOp::Delete(_) => match owner {
                Some(p) if p == self.cfg.protocol => {
                    self.table.remove(&prefix);
                    Ok(())
                }
                _ => Err(FibError::NotInstalled),
            },
        }
    }
}

impl Fib for MemoryFib {
    fn apply(&mut self, batch: &[FibOp]) -> Vec<(IpNet, FibError)> {
        self.batches.push(batch.to_vec());
        batch
            .iter()
            .filter_map(|op| self.apply_one(op).err().map(|e| (op.prefix(), e)))
            .collect()
    }

    fn dump_own(&mut self) -> Result<Vec<FibRoute>, FibError> {
        Ok(self
            .table
            .values()
            .filter(|(p, _)| *p == self.cfg.protocol)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn dump_table(&mut self) -> Result<KernelTable, FibError> {
        Ok(KernelTable {
            own: self.dump_own()?,
            foreign: self
                .table
                .values()
                .filter(|(p, _)| *p != self.cfg.protocol)
                .map(|(p, r)| (r.prefix, *p))
                .collect(),
        })
    }
}

impl MemoryFib {
    /// Removes whatever route holds `prefix`, as `ip route del` by hand would.
    pub fn remove_by_hand(&mut self, prefix: IpNet) -> Option<(u8, FibRoute)> {
        self.table.remove(&prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::NextHop;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn records_and_respects_ownership() {
        let mut fib = MemoryFib::new(FibConfig::default());
        let foreign = FibRoute::blackhole(net("10.244.9.0/24"));
        fib.add_foreign(foreign.clone(), 4);
        let ours = FibRoute::unicast(
            net("10.244.1.0/26"),
            vec![NextHop::via("198.18.0.2".parse().unwrap())],
        );
        let errs = fib.apply(&[
            FibOp::Replace(ours.clone()),
            FibOp::Replace(FibRoute::blackhole(net("10.244.9.0/24"))),
            FibOp::Delete(net("10.244.9.0/24")),
            FibOp::Delete(net("10.244.2.0/26")),
        ]);
        assert_eq!(
            errs,
            vec![
                (net("10.244.9.0/24"), FibError::ForeignRoute { protocol: 4 }),
                (net("10.244.9.0/24"), FibError::NotInstalled),
                (net("10.244.2.0/26"), FibError::NotInstalled),
            ]
        );
        assert_eq!(fib.dump_own().unwrap(), vec![ours]);
        assert_eq!(fib.table().count(), 2);
        assert_eq!(fib.batches().len(), 1);

        fib.fail_next(
            net("10.244.1.0/26"),
            FibError::NoAck {
                errno: libc::ENOBUFS,
            },
        );
        let errs = fib.apply(&[FibOp::Delete(net("10.244.1.0/26"))]);
        assert_eq!(errs.len(), 1);
        // One-shot: the retry works.
        assert!(fib.apply(&[FibOp::Delete(net("10.244.1.0/26"))]).is_empty());
        assert!(fib.dump_own().unwrap().is_empty());
    }
}

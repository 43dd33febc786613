//! Open connections by source address, bounded per address and in all (the
//! HTTP server's and the SIP/TCP listener's), sans-IO.

use std::collections::HashMap;
use std::net::IpAddr;

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The per-address limit is reached for its address.
    PerIp,
    /// The overall limit is reached.
    Total,
}

impl Refusal {
    /// The `kind` label in `warmline_peer_drops_total`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::PerIp => "connections_per_ip",
            Refusal::Total => "connections_total",
        }
    }
}

/// Open connections by address.
#[derive(Debug, Default)]
pub(crate) struct ConnectionTable {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

impl ConnectionTable {
    /// Takes a slot for `ip`, or says which limit refuses it.
    pub(crate) fn admit(&mut self, ip: IpAddr, per_ip: usize, total: usize) -> Result<(), Refusal> {
        if self.total >= total {
            return Err(Refusal::Total);
        }
        let n = self.per_ip.entry(ip).or_default();
        if per_ip > 0 && *n >= per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// Gives `ip`'s slot back.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.total
    }
}

/// A connection table shared by a listener and its connections.
pub(crate) type SharedTable = std::sync::Arc<std::sync::Mutex<ConnectionTable>>;

/// One connection's place in a [`SharedTable`], given back when dropped (so
/// it travels with the connection, into an upgraded WebSocket too).
#[derive(Debug)]
pub(crate) struct Slot {
    table: SharedTable,
    ip: IpAddr,
}

impl Slot {
    /// Takes a slot for `ip` in `table`, or says which limit refuses it.
    pub(crate) fn take(
        table: &SharedTable,
        ip: IpAddr,
        per_ip: usize,
        total: usize,
    ) -> Result<Slot, Refusal> {
        lock(table).admit(ip, per_ip, total)?;
        Ok(Slot {
            table: std::sync::Arc::clone(table),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.table).release(self.ip);
    }
}

/// The table, whatever a panicking holder left behind.
pub(crate) fn lock(table: &SharedTable) -> std::sync::MutexGuard<'_, ConnectionTable> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_slot() {
        let mut t = ConnectionTable::default();
        let l = (2, 10);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(t.admit(a, l.0, l.1), Ok(()));
        assert_eq!(t.admit(a, l.0, l.1), Ok(()));
        assert_eq!(t.admit(a, l.0, l.1), Err(Refusal::PerIp));
        assert_eq!(t.admit(b, l.0, l.1), Ok(()));
        t.release(a);
        assert_eq!(t.admit(a, l.0, l.1), Ok(()));
        assert_eq!(t.open(), 3);
    }

    #[test]
    fn the_total_is_a_ceiling_for_everyone() {
        let mut t = ConnectionTable::default();
        let l = (0, 3);
        for i in 0..3u8 {
            assert_eq!(t.admit(IpAddr::from([10, 0, 0, i]), l.0, l.1), Ok(()));
        }
        assert_eq!(
            t.admit("10.9.9.9".parse().unwrap(), l.0, l.1),
            Err(Refusal::Total)
        );
        t.release(IpAddr::from([10, 0, 0, 0]));
        assert_eq!(t.admit("10.9.9.9".parse().unwrap(), l.0, l.1), Ok(()));
    }

    #[test]
    fn a_slot_is_given_back_when_its_connection_drops() {
        let table = SharedTable::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = Slot::take(&table, ip, 1, 10).expect("free");
        assert_eq!(Slot::take(&table, ip, 1, 10).err(), Some(Refusal::PerIp));
        drop(first);
        assert!(Slot::take(&table, ip, 1, 10).is_ok());
    }

    #[test]
    fn releasing_more_than_was_taken_cannot_underflow() {
        let mut t = ConnectionTable::default();
        t.release("10.0.0.1".parse().unwrap());
        assert_eq!(t.open(), 0);
    }
}

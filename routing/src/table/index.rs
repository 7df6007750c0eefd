//! Lookup structures over a [`Table`]: O(1) exact-address lookup and
//! most-specific-suffix lookup for accepted domains and connectors.

use super::{AddressRoute, ConnectorRoute, SpaceRoute, Table};
use crate::address::Address;
use crate::grants::Grants;
use crate::pattern::{DomainPattern, SuffixIndex};
use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// The connector selected for a pattern: specificity first (the index
/// handles that), then lowest cost, then connector name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorChoice {
    pub connector: u32,
    pub pattern: DomainPattern,
    pub cost: u32,
}

/// A table ready for resolution. Owns the table; indexes hold positions.
#[derive(Debug)]
pub struct RoutingTable {
    table: Table,
    spaces: SuffixIndex<u32>,
    connectors: SuffixIndex<ConnectorChoice>,
    addresses: HashTable<u32>,
    hasher: DefaultHashBuilder,
    grants: Grants,
}

/// One step of resolution (docs/design.md, "Resolving one recipient", steps 2–4) for one address.
pub(crate) enum Next<'t> {
    /// No AddressSpace accepts the domain.
    NotOurs,
    /// The address belongs to a contact: rewrite to its target.
    Contact(&'t SpaceRoute, &'t AddressRoute),
    /// No contact; the space is an alias domain.
    Alias(&'t SpaceRoute, &'t str),
    /// No contact; the space's type decides.
    Space(&'t SpaceRoute),
}

impl RoutingTable {
    pub fn new(table: Table) -> RoutingTable {
        let hasher = DefaultHashBuilder::default();
        let mut addresses = HashTable::with_capacity(table.addresses.len());
        for (i, a) in table.addresses.iter().enumerate() {
            let list = &table.addresses;
            addresses.insert_unique(hasher.hash_one(a.address.as_str()), i as u32, |&j| {
                hasher.hash_one(list[j as usize].address.as_str())
            });
        }
        RoutingTable::with_address_index(table, addresses, hasher)
    }

    /// Like [`RoutingTable::new`] for a table from outside (a loaded one):
    /// fails with the first address that appears twice.
    pub fn try_new(table: Table) -> Result<RoutingTable, String> {
        let hasher = DefaultHashBuilder::default();
        let mut addresses: HashTable<u32> = HashTable::with_capacity(table.addresses.len());
        let list = &table.addresses;
        for (i, a) in list.iter().enumerate() {
            let hash = hasher.hash_one(a.address.as_str());
            if addresses
                .find(hash, |&j| list[j as usize].address == a.address)
                .is_some()
            {
                return Err(a.address.clone());
            }
            addresses.insert_unique(hash, i as u32, |&j| {
                hasher.hash_one(list[j as usize].address.as_str())
            });
        }
        Ok(RoutingTable::with_address_index(table, addresses, hasher))
    }

    /// A table whose address index the compiler already built (positions in
    /// `table.addresses`, hashed with `hasher`).
    pub(crate) fn with_address_index(
        table: Table,
        addresses: HashTable<u32>,
        hasher: DefaultHashBuilder,
    ) -> RoutingTable {
        debug_assert_eq!(addresses.len(), table.addresses.len());
        let mut spaces = SuffixIndex::default();
        for (i, s) in table.spaces.iter().enumerate() {
            spaces.insert(&s.pattern, i as u32);
        }
        let mut connectors: SuffixIndex<ConnectorChoice> = SuffixIndex::default();
        // Connectors are sorted by name, so the first of equal cost wins the tie.
        for (i, c) in table.connectors.iter().enumerate() {
            for (pattern, cost) in &c.address_spaces {
                let better = connectors.get(pattern).is_none_or(|cur| *cost < cur.cost);
                if better {
                    let choice = ConnectorChoice {
                        connector: i as u32,
                        pattern: pattern.clone(),
                        cost: *cost,
                    };
                    connectors.insert(pattern, choice);
                }
            }
        }
        let grants = Grants::new(&table.grants);
        RoutingTable {
            table,
            spaces,
            connectors,
            addresses,
            hasher,
            grants,
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// For the analyser, which sets loop flags after looking; the flags do
    /// not change what the indexes hold.
    pub(crate) fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    pub fn into_table(self) -> Table {
        self.table
    }

    /// Who may send, indexed by principal.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    pub fn connector(&self, index: u32) -> &ConnectorRoute {
        &self.table.connectors[index as usize]
    }

    /// The most specific accepted space for a canonical domain.
    pub fn space_for(&self, domain: &str) -> Option<&SpaceRoute> {
        self.spaces
            .lookup(domain)
            .map(|&i| &self.table.spaces[i as usize])
    }

    pub(crate) fn space_index(&self, domain: &str) -> Option<u32> {
        self.spaces.lookup(domain).copied()
    }

    /// The connector selected for a canonical domain.
    pub fn connector_for(&self, domain: &str) -> Option<&ConnectorChoice> {
        self.connectors.lookup(domain)
    }

    /// The contact address entry for a lookup key.
    pub fn address(&self, key: &str) -> Option<&AddressRoute> {
        let list = &self.table.addresses;
        self.addresses
            .find(self.hasher.hash_one(key), |&i| {
                list[i as usize].address == key
            })
            .map(|&i| &list[i as usize])
    }

    pub(crate) fn address_index(&self, key: &str) -> Option<u32> {
        let list = &self.table.addresses;
        self.addresses
            .find(self.hasher.hash_one(key), |&i| {
                list[i as usize].address == key
            })
            .copied()
    }

    pub(crate) fn next(&self, addr: &Address) -> Next<'_> {
        let Some(space) = self.space_for(addr.domain()) else {
            return Next::NotOurs;
        };
        if let Some(contact) = self.address(&addr.key()) {
            return Next::Contact(space, contact);
        }
        match &space.action {
            super::SpaceAction::RewriteTo(to) => Next::Alias(space, to),
            _ => Next::Space(space),
        }
    }
}

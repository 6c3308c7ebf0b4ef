//! The access policies of the apps the gateway serves (SPEC §15), as one table that a running node
//! swaps whole when its configuration file changes: readers take the current table without a lock
//! (`arc-swap`), so the gateway's check costs a pointer load and a hash lookup, and a request sees
//! either the old table or the new one, never a mix. The decision itself is the pure
//! `gatehouse_core::access::decide`.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_core::access::AccessPolicy;

/// App name → its policy. An app that is not in the table lets every enabled user in.
pub type PolicyTable = HashMap<String, Arc<AccessPolicy>>;

/// The current policy table.
#[derive(Debug)]
pub struct AccessPolicies {
    table: ArcSwap<PolicyTable>,
}

impl AccessPolicies {
    pub fn new(table: PolicyTable) -> Self {
        Self { table: ArcSwap::from_pointee(table) }
    }

    /// The policy of `app`, or `None` when it has none (every enabled user may open it).
    pub fn policy_of(&self, app: &str) -> Option<Arc<AccessPolicy>> {
        self.table.load().get(app).cloned()
    }

    /// Puts a new table in place at once, for every request that starts after this call.
    pub fn replace(&self, table: PolicyTable) {
        self.table.store(Arc::new(table));
    }

    /// How many apps have a policy.
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_core::access::PolicyLists;

    use super::*;

    #[test]
    fn a_replaced_table_is_what_the_next_lookup_sees() {
        let only = |domain: &str| {
            let lists = PolicyLists { domains: vec![domain.to_owned()], ..Default::default() };
            Arc::new(AccessPolicy::parse(&lists).unwrap())
        };
        let policies = AccessPolicies::new(PolicyTable::from([("shop".to_owned(), only("example.com"))]));
        assert_eq!(policies.policy_of("shop").unwrap().lists().domains, ["example.com"]);
        assert!(policies.policy_of("blog").is_none(), "no table: every enabled user");
        let held = policies.policy_of("shop").unwrap();
        policies.replace(PolicyTable::from([("blog".to_owned(), only("example.org"))]));
        assert!(policies.policy_of("shop").is_none());
        assert_eq!(policies.policy_of("blog").unwrap().lists().domains, ["example.org"]);
        assert_eq!(held.lists().domains, ["example.com"], "a request that took the old policy keeps it whole");
        assert_eq!(policies.len(), 1);
    }
}

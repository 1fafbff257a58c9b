//! Roles a member holds inside one tenant, and what each may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A member's role inside one tenant. Roles are ordered: each one can do
/// everything the roles below it can.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything in the tenant, changes nothing.
    Viewer,
    /// Works conversations (reply, hand off, resume).
    Agent,
    /// Manages bots, channel accounts, API keys and users below owner.
    Admin,
    /// Everything, including granting the owner role.
    Owner,
}

/// Things a request may want to do inside a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read any resource of the tenant.
    Read,
    /// Act on conversations (manual replies, handoff).
    Converse,
    /// Create, change and delete bots, accounts, rules, API keys.
    Manage,
    /// Add users and change their roles.
    ManageMembers,
    /// Read the tenant's audit log.
    ReadAudit,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Agent, Role::Admin, Role::Owner];

    /// The least role that holds `permission`.
    pub fn minimum_for(permission: Permission) -> Role {
        match permission {
            Permission::Read => Role::Viewer,
            Permission::Converse => Role::Agent,
            Permission::Manage | Permission::ManageMembers | Permission::ReadAudit => Role::Admin,
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        self >= Role::minimum_for(permission)
    }

    /// Whether a member with this role may hand `granted` to someone else
    /// (a user or an API key): never more than one holds.
    pub fn may_grant(self, granted: Role) -> bool {
        self.allows(Permission::ManageMembers) && granted <= self
    }

    /// Whether a member with this role may change or remove the membership
    /// of someone who holds `target`: never of someone above oneself.
    pub fn may_manage(self, target: Role) -> bool {
        self.allows(Permission::ManageMembers) && target <= self
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Agent => "agent",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}`: expected one of owner, admin, agent, viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Viewer.allows(Permission::Read));
        assert!(!Role::Viewer.allows(Permission::Converse));
        assert!(Role::Agent.allows(Permission::Converse));
        assert!(!Role::Agent.allows(Permission::Manage));
        assert!(Role::Admin.allows(Permission::Manage));
        assert!(Role::Owner.allows(Permission::ManageMembers));
    }

    #[test]
    fn nobody_grants_more_than_they_hold() {
        assert!(Role::Admin.may_grant(Role::Admin));
        assert!(!Role::Admin.may_grant(Role::Owner));
        assert!(Role::Owner.may_grant(Role::Owner));
        assert!(!Role::Agent.may_grant(Role::Viewer));
    }

    #[test]
    fn parses_names_case_insensitively() {
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("boss".parse::<Role>().is_err());
    }
}

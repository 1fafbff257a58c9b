//! Who did something: recorded on every change in the audit log.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A user signed in through the API.
    User,
    /// A request authenticated with an API key.
    ApiKey,
    /// Someone at the command line on the server (`integro …`).
    Cli,
    /// Integro itself (bootstrap, schedulers).
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ApiKey => "api_key",
            ActorKind::Cli => "cli",
            ActorKind::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    /// The user or API key id, when there is one.
    pub id: Option<String>,
    /// Something a person recognises: an email, a key name, a login name.
    pub label: String,
}

impl Actor {
    pub fn cli() -> Actor {
        let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Actor {
            kind: ActorKind::Cli,
            id: None,
            label: format!("cli:{who}"),
        }
    }

    pub fn system() -> Actor {
        Actor {
            kind: ActorKind::System,
            id: None,
            label: "integro".into(),
        }
    }
}

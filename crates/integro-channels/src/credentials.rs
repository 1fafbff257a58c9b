//! Which credential fields each channel kind takes, and which are secret.
//! Secret fields are sealed at rest and never returned by the API.

use std::collections::BTreeMap;

use integro_core::ChannelKind;

#[derive(Debug, Clone, Copy)]
pub struct CredentialField {
    pub name: &'static str,
    pub secret: bool,
    pub required: bool,
    /// This field identifies the account at the provider (phone number id, …).
    pub external_id: bool,
}

const fn field(name: &'static str, secret: bool, external_id: bool) -> CredentialField {
    CredentialField {
        name,
        secret,
        required: true,
        external_id,
    }
}

const TWILIO_WHATSAPP: &[CredentialField] = &[
    field("account_sid", false, false),
    field("auth_token", true, false),
    field("phone_number", false, true),
];
const WHATSAPP_CLOUD: &[CredentialField] = &[
    field("phone_number_id", false, true),
    field("access_token", true, false),
    field("app_secret", true, false),
    field("verify_token", true, false),
];
const INSTAGRAM: &[CredentialField] = &[
    field("ig_user_id", false, true),
    field("access_token", true, false),
    field("app_secret", true, false),
    field("verify_token", true, false),
];
/// X takes OAuth 1.0a user tokens (`access_token`, `access_token_secret`,
/// with `user_id`), or an OAuth 2.0 app (`client_id`, `client_secret` for
/// a confidential client) whose tokens the connect flow stores; either way
/// the app's consumer key and secret, which sign X's webhooks.
const X: &[CredentialField] = &[
    optional("user_id", false, true),
    field("consumer_key", true, false),
    field("consumer_secret", true, false),
    optional("access_token", true, false),
    optional("access_token_secret", true, false),
    optional("client_id", false, false),
    optional("client_secret", true, false),
    optional("oauth2_access_token", true, false),
    optional("oauth2_refresh_token", true, false),
    optional("oauth2_expires_at", false, false),
    optional(X_RECEIVE, false, false),
];

/// A field whose values are a fixed few: whether `value` is one of them.
pub fn check_value(kind: ChannelKind, name: &str, value: &str) -> Result<(), String> {
    if kind == ChannelKind::X && name == X_RECEIVE && !X_RECEIVE_MODES.contains(&value.trim()) {
        return Err(format!("must be one of {}", X_RECEIVE_MODES.join(", ")));
    }
    Ok(())
}

/// How an X account receives: `webhook` (X posts events to Integro) or
/// `polling` (Integro asks X, for installs X cannot reach).
pub const X_RECEIVE: &str = "receive";
pub const X_RECEIVE_MODES: [&str; 2] = ["webhook", "polling"];

const fn optional(name: &'static str, secret: bool, external_id: bool) -> CredentialField {
    CredentialField {
        required: false,
        ..field(name, secret, external_id)
    }
}

/// Fields a kind needs together, beyond each field's own rule: X needs
/// OAuth 1.0a's user, token and secret unless it has an OAuth 2.0 app.
fn missing_together(kind: ChannelKind, given: &BTreeMap<String, String>) -> Option<&'static str> {
    let has = |name: &str| given.get(name).is_some_and(|v| !v.trim().is_empty());
    match kind {
        ChannelKind::X if !has("client_id") => ["user_id", "access_token", "access_token_secret"]
            .into_iter()
            .find(|name| !has(name)),
        _ => None,
    }
}

pub fn credential_fields(kind: ChannelKind) -> &'static [CredentialField] {
    match kind {
        ChannelKind::TwilioWhatsapp => TWILIO_WHATSAPP,
        ChannelKind::WhatsappCloud => WHATSAPP_CLOUD,
        ChannelKind::Instagram => INSTAGRAM,
        ChannelKind::X => X,
        ChannelKind::Web => &[],
    }
}

/// An account's credentials, secret and public fields alike, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials(pub BTreeMap<String, String>);

impl Credentials {
    pub fn get(&self, name: &str) -> Result<&str, CredentialError> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| CredentialError(format!("the account has no `{name}` credential")))
    }

    /// A credential a send needs; without it no attempt can succeed.
    pub fn require(&self, name: &str) -> Result<&str, integro_core::SendError> {
        self.get(name).map_err(|e| {
            integro_core::SendError::permanent(Some("missing_credential".into()), e.to_string())
        })
    }

    /// Checks `given` against the fields of `kind`: every required field is
    /// present and non-empty, and nothing unknown is there.
    pub fn validate(
        kind: ChannelKind,
        given: &BTreeMap<String, String>,
    ) -> Result<Credentials, (String, String)> {
        let fields = credential_fields(kind);
        for name in given.keys() {
            if !fields.iter().any(|f| f.name == name) {
                let expected: Vec<&str> = fields.iter().map(|f| f.name).collect();
                return Err((
                    format!("credentials.{name}"),
                    if expected.is_empty() {
                        format!("a {kind} account takes no credentials")
                    } else {
                        format!(
                            "unknown credential for {kind}; expected {}",
                            expected.join(", ")
                        )
                    },
                ));
            }
        }
        for f in fields {
            match given.get(f.name).map(|v| v.trim()) {
                Some(v) if !v.is_empty() => {}
                _ if !f.required => {}
                _ => {
                    return Err((
                        format!("credentials.{}", f.name),
                        format!("is required for a {kind} account"),
                    ));
                }
            }
        }
        for (name, value) in given {
            check_value(kind, name, value).map_err(|why| (format!("credentials.{name}"), why))?;
        }
        if let Some(name) = missing_together(kind, given) {
            return Err((
                format!("credentials.{name}"),
                format!("is required for a {kind} account without an OAuth 2.0 app (client_id)"),
            ));
        }
        Ok(Credentials(
            given
                .iter()
                .map(|(k, v)| (k.clone(), v.trim().to_string()))
                .collect(),
        ))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let err =
            Credentials::validate(ChannelKind::TwilioWhatsapp, &map(&[("account_sid", "AC1")]))
                .unwrap_err();
        assert_eq!(err.0, "credentials.auth_token");
        let err = Credentials::validate(ChannelKind::Web, &map(&[("token", "x")])).unwrap_err();
        assert_eq!(err.0, "credentials.token");
        assert!(Credentials::validate(ChannelKind::Web, &BTreeMap::new()).is_ok());
    }
}

//! Tenant, user, API key and secret commands: the same store code as the API,
//! recorded in the audit log with a `cli:$USER` actor.

use anyhow::{Context, bail};
use integro_core::Actor;
use integro_server::Config;
use integro_server::startup::{load_keyring, open_database};
use integro_store::credentials::generate_password;
use integro_store::secrets::SecretStore;
use integro_store::users::NewUser;
use integro_store::{PageRequest, api_keys, tenants, users};

use crate::{ApiKeyCommand, TenantCommand, UserCommand};

const PAGE: u32 = 200;

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}

pub async fn tenant(config: &Config, cmd: TenantCommand, json: bool) -> anyhow::Result<()> {
    let db = open_database(config, true).await?;
    match cmd {
        TenantCommand::Create { name } => {
            let mut tx = db.begin().await?;
            let tenant = tenants::create(&mut tx, &Actor::cli(), None, &name).await?;
            tx.commit().await?;
            if json {
                print_json(&tenant);
            } else {
                println!("Created tenant {} ({})", tenant.name, tenant.id);
            }
        }
        TenantCommand::List => {
            let mut all = Vec::new();
            let mut page = PageRequest::first(PAGE);
            loop {
                let p = tenants::list(&db, None, &page).await?;
                all.extend(p.items);
                match p.next_cursor {
                    Some(c) => page = PageRequest::parse(Some(PAGE), Some(&c))?,
                    None => break,
                }
            }
            if json {
                print_json(&all);
            } else {
                println!("{:<36}  {:<20}  NAME", "ID", "CREATED");
                for t in all {
                    println!("{:<36}  {:<20}  {}", t.id, t.created_at.date(), t.name);
                }
            }
        }
    }
    Ok(())
}

pub async fn user(config: &Config, cmd: UserCommand, json: bool) -> anyhow::Result<()> {
    let db = open_database(config, true).await?;
    let actor = Actor::cli();
    match cmd {
        UserCommand::Create {
            email,
            password,
            name,
            tenant,
            role,
            operator,
        } => {
            if let Some(t) = tenant
                && tenants::get(&db, t).await?.is_none()
            {
                bail!("tenant {t} does not exist (see `integro tenant list`)");
            }
            let generated = password.is_none().then(generate_password);
            let mut tx = db.begin().await?;
            let user = users::create(
                &mut tx,
                &actor,
                None,
                NewUser {
                    email: &email,
                    name: name.as_deref(),
                    password: password
                        .as_deref()
                        .or(generated.as_deref())
                        .unwrap_or_default(),
                    is_operator: operator,
                },
            )
            .await?;
            if let (Some(t), Some(r)) = (tenant, role) {
                users::set_membership(&mut tx, &actor, None, t, user.id, r).await?;
            }
            tx.commit().await?;
            if json {
                print_json(&serde_json::json!({ "user": user, "password": generated }));
            } else {
                println!("Created user {} ({})", user.email, user.id);
                if let Some(pw) = generated {
                    println!("Password (shown once): {pw}");
                }
            }
        }
        UserCommand::List { tenant } => {
            let page = PageRequest::first(PAGE);
            let rows: Vec<(users::User, String)> = match tenant {
                Some(t) => users::list_members(&db, t, &page)
                    .await?
                    .items
                    .into_iter()
                    .map(|m| (m.user, m.role.to_string()))
                    .collect(),
                None => users::list_all(&db, &page)
                    .await?
                    .items
                    .into_iter()
                    .map(|u| {
                        let role = if u.is_operator { "operator" } else { "" }.to_string();
                        (u, role)
                    })
                    .collect(),
            };
            if json {
                print_json(
                    &rows
                        .iter()
                        .map(|(u, r)| serde_json::json!({"user": u, "role": r}))
                        .collect::<Vec<_>>(),
                );
            } else {
                println!("{:<36}  {:<10}  EMAIL", "ID", "ROLE");
                for (u, r) in rows {
                    println!("{:<36}  {:<10}  {}", u.id, r, u.email);
                }
            }
        }
    }
    Ok(())
}

pub async fn api_key(config: &Config, cmd: ApiKeyCommand, json: bool) -> anyhow::Result<()> {
    let db = open_database(config, true).await?;
    let actor = Actor::cli();
    let tenant_of = |cmd: &ApiKeyCommand| match cmd {
        ApiKeyCommand::Create { tenant, .. }
        | ApiKeyCommand::List { tenant }
        | ApiKeyCommand::Revoke { tenant, .. } => *tenant,
    };
    let tenant = tenant_of(&cmd);
    if tenants::get(&db, tenant).await?.is_none() {
        bail!("tenant {tenant} does not exist (see `integro tenant list`)");
    }
    match cmd {
        ApiKeyCommand::Create { name, role, .. } => {
            let mut tx = db.begin().await?;
            let (key, secret) =
                api_keys::create(&mut tx, &actor, None, tenant, &name, role).await?;
            tx.commit().await?;
            if json {
                print_json(&serde_json::json!({ "api_key": key, "key": secret }));
            } else {
                println!(
                    "Created API key {} ({}, role {})",
                    key.name, key.id, key.role
                );
                println!("Key (shown once): {secret}");
            }
        }
        ApiKeyCommand::List { .. } => {
            let keys = api_keys::list(&db, tenant, &PageRequest::first(PAGE))
                .await?
                .items;
            if json {
                print_json(&keys);
            } else {
                println!(
                    "{:<36}  {:<10}  {:<8}  {:<10}  NAME",
                    "ID", "PREFIX", "ROLE", "STATE"
                );
                for k in keys {
                    let state = if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<36}  {:<10}  {:<8}  {:<10}  {}",
                        k.id, k.prefix, k.role, state, k.name
                    );
                }
            }
        }
        ApiKeyCommand::Revoke { id, .. } => {
            let key = api_keys::get(&db, tenant, id)
                .await?
                .with_context(|| format!("API key {id} not found in tenant {tenant}"))?;
            let mut tx = db.begin().await?;
            let key = api_keys::revoke(&mut tx, &actor, None, &key).await?;
            tx.commit().await?;
            if json {
                print_json(&key);
            } else {
                println!("Revoked API key {} ({})", key.name, key.id);
            }
        }
    }
    Ok(())
}

pub async fn rotate_secrets(config: &Config) -> anyhow::Result<()> {
    let (keyring, _) = load_keyring(config)?;
    let db = open_database(config, true).await?;
    let n = SecretStore::rotate(&db, &keyring).await?;
    println!(
        "Re-sealed {n} secret(s) with key {}.",
        keyring.current().id()
    );
    Ok(())
}

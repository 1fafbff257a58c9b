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

use crate::{AccountCommand, ApiKeyCommand, BotCommand, TenantCommand, UserCommand};

const PAGE: u32 = 200;

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}

pub async fn tenant(config: &Config, cmd: TenantCommand, json: bool) -> anyhow::Result<()> {
    let db = open_existing_database(config).await?;
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
    let db = open_existing_database(config).await?;
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
            let tenant = match &tenant {
                Some(t) => Some(require_tenant(&db, t).await?),
                None => None,
            };
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
            let tenant = match &tenant {
                Some(t) => Some(require_tenant(&db, t).await?),
                None => None,
            };
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
        UserCommand::ResetPassword { email, password } => {
            let user = find_user(&db, &email).await?;
            let generated = password.is_none().then(generate_password);
            let password = password.or(generated.clone()).unwrap_or_default();
            let mut tx = db.begin().await?;
            users::set_password(&mut tx, &actor, None, user.id, &password).await?;
            tx.commit().await?;
            if json {
                print_json(&serde_json::json!({ "user": user.id, "password": generated }));
            } else {
                println!("New password set for {}; its sessions ended", user.email);
                if let Some(pw) = generated {
                    println!("Password (shown once): {pw}");
                }
            }
        }
        UserCommand::Disable { email } => set_disabled(&db, &actor, &email, true, json).await?,
        UserCommand::Enable { email } => set_disabled(&db, &actor, &email, false, json).await?,
    }
    Ok(())
}

async fn find_user(db: &integro_store::Db, email: &str) -> anyhow::Result<users::User> {
    users::find_by_email(db, email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user has the email {email} (see `integro user list`)"))
}

async fn set_disabled(
    db: &integro_store::Db,
    actor: &Actor,
    email: &str,
    disabled: bool,
    json: bool,
) -> anyhow::Result<()> {
    let user = find_user(db, email).await?;
    let mut tx = db.begin().await?;
    users::set_disabled(&mut tx, actor, None, user.id, disabled).await?;
    tx.commit().await?;
    let state = if disabled { "disabled" } else { "enabled" };
    if json {
        print_json(&serde_json::json!({ "user": user.id, "state": state }));
    } else {
        println!("User {} is {state}", user.email);
    }
    Ok(())
}

pub async fn api_key(config: &Config, cmd: ApiKeyCommand, json: bool) -> anyhow::Result<()> {
    let db = open_existing_database(config).await?;
    let actor = Actor::cli();
    let tenant_of = |cmd: &ApiKeyCommand| match cmd {
        ApiKeyCommand::Create { tenant, .. }
        | ApiKeyCommand::List { tenant }
        | ApiKeyCommand::Revoke { tenant, .. } => tenant.clone(),
    };
    let tenant = require_tenant(&db, &tenant_of(&cmd)).await?;
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
    let db = open_existing_database(config).await?;
    let keyring = if config.master_key.is_some() {
        // Keys in the environment: a running server reads them only when it
        // starts, so it must already hold the new key (as INTEGRO_MASTER_KEY)
        // and the old one (in INTEGRO_PREVIOUS_MASTER_KEYS) before this runs.
        let (keyring, _) = load_keyring(config)?;
        println!(
            "INTEGRO_MASTER_KEY is set: re-sealing with key {}. Every running server must already \
             have been restarted with this key as INTEGRO_MASTER_KEY and the old one in \
             INTEGRO_PREVIOUS_MASTER_KEYS (their /readyz says so otherwise).",
            keyring.current().id()
        );
        keyring
    } else {
        if !config.master_key_path().exists() {
            anyhow::bail!(
                "no master key at {} (nothing to rotate); run `integro serve` once, or set --data-dir",
                config.master_key_path().display()
            );
        }
        // Key files: a new master.key, the old one kept in
        // master.key.previous; running servers read both again when they
        // meet a secret sealed with the new key.
        let keys = integro_server::startup::rotate_key_files(config)?;
        println!(
            "New master key {} written to {}; the old one is kept in {}.",
            keys.current.id(),
            config.master_key_path().display(),
            integro_server::startup::previous_keys_path(config).display()
        );
        integro_store::secrets::Keyring::new(keys.current, keys.previous)
    };
    let n = SecretStore::rotate(&db, &keyring).await?;
    println!(
        "Re-sealed {n} secret(s) with key {}.",
        keyring.current().id()
    );
    Ok(())
}

/// The database an administrative command works on. The default SQLite
/// file must already exist: run from the wrong directory, a command says
/// where it looked rather than creating an empty database there.
pub async fn open_existing_database(config: &Config) -> anyhow::Result<integro_store::Db> {
    if config.database_url.is_none() {
        let file = config.data_dir.join("integro.db");
        if !file.exists() {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "?".into());
            bail!(
                "no Integro database at {} (the data directory {} is taken from --data-dir or \
                 INTEGRO_DATA_DIR, else ./integro-data under {cwd}). Run this where `integro serve` \
                 runs, pass --data-dir, set INTEGRO_DATABASE_URL, or create one here with `integro migrate`",
                file.display(),
                config.data_dir.display()
            );
        }
    }
    open_database(config, true).await
}

/// The tenant a `--tenant` names, by id or by name.
pub async fn require_tenant(
    db: &integro_store::Db,
    tenant: &crate::TenantRef,
) -> anyhow::Result<uuid::Uuid> {
    if let Ok(id) = uuid::Uuid::parse_str(&tenant.0) {
        if tenants::get(db, id).await?.is_none() {
            bail!("tenant {id} does not exist (see `integro tenant list`)");
        }
        return Ok(id);
    }
    let found = tenants::find_by_name(db, &tenant.0).await?;
    match found.as_slice() {
        [one] => Ok(one.id),
        [] => bail!(
            "no tenant is named {:?} (see `integro tenant list`)",
            tenant.0
        ),
        several => bail!(
            "{} tenants are named {:?}; name one by its id: {}",
            several.len(),
            tenant.0,
            several
                .iter()
                .map(|t| t.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub async fn bot(config: &Config, cmd: BotCommand, json: bool) -> anyhow::Result<()> {
    let db = open_existing_database(config).await?;
    match cmd {
        BotCommand::Create {
            tenant,
            name,
            fallback_reply,
        } => {
            let tenant = require_tenant(&db, &tenant).await?;
            let mut tx = db.begin().await?;
            let fields = integro_store::bots::BotFields {
                name,
                description: None,
                fallback_reply,
                active: true,
                ai_profile_id: None,
                persona: None,
                settings: Default::default(),
            };
            let bot =
                integro_store::bots::create(&mut tx, &Actor::cli(), None, tenant, fields).await?;
            tx.commit().await?;
            if json {
                print_json(&bot);
            } else {
                println!("Created bot {} ({})", bot.name, bot.id);
            }
        }
        BotCommand::List { tenant } => {
            let tenant = require_tenant(&db, &tenant).await?;
            let bots = integro_store::bots::list(&db, tenant, &PageRequest::first(PAGE))
                .await?
                .items;
            if json {
                print_json(&bots);
            } else {
                println!("{:<36}  {:<8}  NAME", "ID", "ACTIVE");
                for b in bots {
                    println!("{:<36}  {:<8}  {}", b.id, b.active, b.name);
                }
            }
        }
        BotCommand::Try {
            bot,
            message,
            contact_name,
            channel,
        } => crate::reply::try_bot(&db, config, bot, message, contact_name, channel, json).await?,
    }
    Ok(())
}

pub async fn account(config: &Config, cmd: AccountCommand, json: bool) -> anyhow::Result<()> {
    use integro_channels::{Credentials, credential_fields};
    use integro_store::accounts::{self, CredentialValues, NewAccount};

    let db = open_existing_database(config).await?;
    match cmd {
        AccountCommand::Add {
            tenant,
            bot,
            kind,
            name,
            credentials,
        } => {
            let tenant = require_tenant(&db, &tenant).await?;
            let mut given = std::collections::BTreeMap::new();
            for pair in credentials {
                let (k, v) = pair
                    .split_once('=')
                    .with_context(|| format!("--credential `{pair}` is not NAME=VALUE"))?;
                given.insert(k.trim().to_string(), v.to_string());
            }
            let checked = Credentials::validate(kind, &given)
                .map_err(|(field, msg)| anyhow::anyhow!("{field}: {msg}"))?;
            let mut values = CredentialValues::default();
            let fields = credential_fields(kind);
            for (k, v) in checked.0 {
                if fields.iter().any(|f| f.name == k && f.secret) {
                    values.secret.insert(k, v);
                } else {
                    values.public.insert(k, v);
                }
            }
            let external_id = fields
                .iter()
                .find(|f| f.external_id)
                .and_then(|f| values.public.get(f.name).cloned());
            let (keyring, _) = load_keyring(config)?;
            let mut tx = db.begin().await?;
            let new = NewAccount {
                bot_id: bot,
                kind,
                name,
                external_id,
                credentials: values,
                template: None,
            };
            let account =
                accounts::create(&mut tx, &keyring, &Actor::cli(), None, tenant, new).await?;
            tx.commit().await?;
            let urls = integro_server::api::accounts::webhook_urls(&config.public_base(), &account);
            if json {
                print_json(&serde_json::json!({ "account": account, "webhook_urls": urls }));
            } else {
                println!(
                    "Created {} account {} ({})",
                    account.kind, account.name, account.id
                );
                for (what, url) in urls {
                    println!("  {what:<16} {url}");
                }
                if let Some(warning) = config.public_url_warning() {
                    eprintln!("warning: {warning}");
                }
            }
        }
        AccountCommand::List { tenant } => {
            let tenant = require_tenant(&db, &tenant).await?;
            let filter = accounts::AccountFilter::default();
            let list = accounts::list(&db, tenant, &filter, &PageRequest::first(PAGE))
                .await?
                .items;
            if json {
                print_json(&list);
            } else {
                println!("{:<36}  {:<16}  {:<36}  NAME", "ID", "KIND", "BOT");
                for a in list {
                    println!(
                        "{:<36}  {:<16}  {:<36}  {}",
                        a.id,
                        a.kind.as_str(),
                        a.bot_id,
                        a.name
                    );
                }
            }
        }
    }
    Ok(())
}

//! The `integro` binary as an operator uses it.

mod support;

use std::process::{Command, Output};

use support::{
    Canned, free_address, http, integro, mock_provider, new_master_key, serve, serve_with, start,
    text,
};

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = integro(dir.path(), &["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out);
    for command in [
        "serve", "worker", "migrate", "doctor", "tenant", "user", "apikey", "bot", "account",
    ] {
        assert!(help.contains(command), "{command} in --help");
    }
    let out = integro(dir.path(), &["--version"], &[]);
    assert!(text(&out).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn doctor_explains_a_wrong_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let out = integro(
        dir.path(),
        &["doctor"],
        &[
            ("INTEGRO_DATABASE_URL", "mysql://localhost/x"),
            ("INTEGRO_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("unsupported database URL"),
        "{}",
        text(&out)
    );

    let out = integro(
        dir.path(),
        &["doctor"],
        &[
            (
                "INTEGRO_DATABASE_URL",
                "postgres://nobody:secret@127.0.0.1:1/none",
            ),
            ("INTEGRO_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out);
    assert!(said.contains("FAIL  database"), "{said}");
    assert!(
        !said.contains("secret"),
        "the password is never printed: {said}"
    );

    // --json: one document, the same checks.
    let out = integro(
        dir.path(),
        &["--json", "doctor"],
        &[
            (
                "INTEGRO_DATABASE_URL",
                "postgres://nobody:secret@127.0.0.1:1/none",
            ),
            ("INTEGRO_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON");
    assert_eq!(report["ok"], false);
    let database = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "database")
        .expect("a database check");
    assert_eq!(database["status"], "fail");
}

/// Run where there is no data directory, a command says where it looked
/// and creates nothing; `--tenant` takes a name as well as an id.
#[test]
fn commands_say_where_they_looked_and_take_tenant_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nowhere");
    let out = integro(&data, &["tenant", "list"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("no Integro database at"), "{said}");
    assert!(said.contains("integro migrate"), "{said}");
    assert!(!data.exists(), "nothing was created");

    assert!(integro(&data, &["migrate"], &[]).status.success());
    assert!(
        integro(&data, &["tenant", "create", "Acme Shop"], &[])
            .status
            .success()
    );
    let out = integro(
        &data,
        &[
            "--json",
            "bot",
            "create",
            "--tenant",
            "acme shop",
            "--name",
            "Helper",
            "--fallback-reply",
            "Hi",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = integro(&data, &["bot", "list", "--tenant", "Nope"], &[]);
    assert!(text(&out).contains("no tenant is named"), "{}", text(&out));
    assert!(
        integro(&data, &["tenant", "create", "Acme Shop"], &[])
            .status
            .success()
    );
    let out = integro(&data, &["bot", "list", "--tenant", "Acme Shop"], &[]);
    assert!(text(&out).contains("2 tenants are named"), "{}", text(&out));
}

/// `doctor` beside its own running server: the port it holds is no
/// failure; `--listen` names it.
#[test]
fn doctor_accepts_the_port_of_its_own_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let (server, listen) = serve(dir.path());
    let out = integro(dir.path(), &["doctor", "--listen", &listen], &[]);
    drop(server);
    let said = text(&out);
    assert!(said.contains("held by a running Integro server"), "{said}");
    assert!(!said.contains("FAIL  listen"), "{said}");
}

#[test]
fn doctor_explains_a_malformed_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = integro(
        dir.path(),
        &["doctor"],
        &[
            ("INTEGRO_MASTER_KEY", "c2hvcnQ="),
            ("INTEGRO_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("must be exactly 32"), "{}", text(&out));
    let out = integro(
        dir.path(),
        &["doctor"],
        &[
            ("INTEGRO_MASTER_KEY", "%%%"),
            ("INTEGRO_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not valid base64"), "{}", text(&out));
}

#[test]
fn doctor_passes_on_a_migrated_default_install() {
    let dir = tempfile::tempdir().unwrap();
    let out = integro(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = integro(
        dir.path(),
        &["doctor"],
        &[("INTEGRO_LISTEN", "127.0.0.1:0")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("All checks passed"));
}

#[test]
fn tenants_and_keys_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    assert!(integro(dir.path(), &["migrate"], &[]).status.success());
    let out = integro(dir.path(), &["--json", "tenant", "create", "Acme"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let tenant: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = tenant["id"].as_str().unwrap();

    let out = integro(dir.path(), &["tenant", "list"], &[]);
    assert!(text(&out).contains("Acme") && text(&out).contains(id));

    let out = integro(
        dir.path(),
        &[
            "--json", "apikey", "create", "--tenant", id, "--name", "ci", "--role", "admin",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(key["key"].as_str().unwrap().starts_with("ik_"));
    let key_id = key["api_key"]["id"].as_str().unwrap();

    let out = integro(
        dir.path(),
        &["apikey", "revoke", key_id, "--tenant", id],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = integro(dir.path(), &["apikey", "list", "--tenant", id], &[]);
    assert!(text(&out).contains("revoked"));

    let out = integro(
        dir.path(),
        &[
            "apikey",
            "list",
            "--tenant",
            "00000000-0000-0000-0000-000000000000",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("does not exist"));

    let out = integro(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "bob@example.com",
            "--tenant",
            id,
            "--role",
            "boss",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown role"), "{}", text(&out));
}

#[test]
fn bots_and_accounts_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let json = |out: &Output| -> serde_json::Value { serde_json::from_slice(&out.stdout).unwrap() };
    assert!(integro(dir.path(), &["migrate"], &[]).status.success());
    let out = integro(dir.path(), &["--json", "tenant", "create", "Acme"], &[]);
    let tenant = json(&out)["id"].as_str().unwrap().to_string();
    let out = integro(
        dir.path(),
        &[
            "--json",
            "bot",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "Helper",
            "--fallback-reply",
            "Hi!",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let bot = json(&out)["id"].as_str().unwrap().to_string();
    let out = integro(
        dir.path(),
        &[
            "--json",
            "account",
            "add",
            "--tenant",
            &tenant,
            "--bot",
            &bot,
            "--kind",
            "twilio_whatsapp",
            "--name",
            "Main",
            "--credential",
            "account_sid=AC1",
            "--credential",
            "auth_token=secret-token-1",
            "--credential",
            "phone_number=+14155238886",
        ],
        &[("INTEGRO_PUBLIC_URL", "https://hooks.example")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let created = json(&out);
    let id = created["account"]["id"].as_str().unwrap();
    assert_eq!(created["account"]["credentials"]["auth_token"], "********");
    assert_eq!(
        created["webhook_urls"]["messages"],
        format!("https://hooks.example/webhooks/twilio/{id}").as_str()
    );
    let out = integro(dir.path(), &["account", "list", "--tenant", &tenant], &[]);
    assert!(text(&out).contains(id) && !text(&out).contains("secret-token-1"));

    // A missing credential is named, and nothing is created.
    let out = integro(
        dir.path(),
        &[
            "account",
            "add",
            "--tenant",
            &tenant,
            "--bot",
            &bot,
            "--kind",
            "whatsapp_cloud",
            "--name",
            "X",
            "--credential",
            "phone_number_id=1",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("credentials.access_token"),
        "{}",
        text(&out)
    );
    let out = integro(
        dir.path(),
        &[
            "account", "add", "--tenant", &tenant, "--bot", &bot, "--kind", "fax", "--name", "X",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown channel kind"),
        "{}",
        text(&out)
    );
}

#[test]
fn rules_round_trip_as_yaml_and_a_dry_run_explains_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let json = |out: &Output| -> serde_json::Value { serde_json::from_slice(&out.stdout).unwrap() };
    assert!(integro(dir.path(), &["migrate"], &[]).status.success());
    let out = integro(dir.path(), &["--json", "tenant", "create", "Acme"], &[]);
    let tenant = json(&out)["id"].as_str().unwrap().to_string();
    let out = integro(
        dir.path(),
        &[
            "--json",
            "bot",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "Helper",
            "--fallback-reply",
            "We will get back to you.",
        ],
        &[],
    );
    let bot = json(&out)["id"].as_str().unwrap().to_string();

    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n- match: any_keyword\n  keywords: [price, cost]\n  reply: 'It costs 5, {{contact.name}}.'\n  priority: 3\n- match: regex\n  pattern: '(?i)order #?\\d+'\n  reply: Checking your order\n",
    )
    .unwrap();
    let out = integro(
        dir.path(),
        &["rules", "import", &bot, rules.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Imported 2 rule(s)"));

    let out = integro(dir.path(), &["rules", "export", &bot], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let exported = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(exported.contains("- price"), "{exported}");
    assert!(exported.contains("Checking your order"), "{exported}");

    // A broken file changes nothing and says which rule is wrong.
    std::fs::write(
        &rules,
        "rules:\n- match: regex\n  pattern: '(['\n  reply: x\n",
    )
    .unwrap();
    let out = integro(
        dir.path(),
        &["rules", "import", &bot, rules.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("rules[0].pattern"), "{}", text(&out));
    let again = integro(dir.path(), &["rules", "export", &bot], &[]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), exported);

    let out = integro(
        dir.path(),
        &[
            "--json",
            "bot",
            "try",
            &bot,
            "What's the PRICE?",
            "--contact-name",
            "Ana",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let result = json(&out);
    assert_eq!(result["replies"], serde_json::json!(["It costs 5, Ana."]));
    assert!(result["rule_id"].is_string());

    let out = integro(dir.path(), &["bot", "try", &bot, "hello there"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("no rule matched"), "{printed}");
    assert!(
        printed.contains("Reply: We will get back to you."),
        "{printed}"
    );
}

/// The status of one of `doctor --json`'s checks.
fn doctor_check(
    dir: &std::path::Path,
    check: &str,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut env = env.to_vec();
    env.push(("INTEGRO_LISTEN", "127.0.0.1:0"));
    let out = integro(dir, &["--json", "doctor"], &env);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json prints JSON ({e}): {}", text(&out)));
    assert_eq!(report["ok"], out.status.success(), "{report}");
    let found = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("a `{check}` check: {report}"));
    (
        out.status.success(),
        found["status"].as_str().unwrap().to_string(),
        found["detail"].as_str().unwrap().to_string(),
    )
}

/// Rotation with the keys in the environment, as the README describes it:
/// the new key as INTEGRO_MASTER_KEY, the old one in
/// INTEGRO_PREVIOUS_MASTER_KEYS, then `integro secrets rotate`; afterwards
/// the new key alone opens every secret and the old one alone does not.
#[test]
fn secrets_rotate_with_keys_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2, k3) = (new_master_key(), new_master_key(), new_master_key());
    let json = |out: &Output| -> serde_json::Value { serde_json::from_slice(&out.stdout).unwrap() };
    let with_k1 = [("INTEGRO_MASTER_KEY", k1.as_str())];
    let out = integro(dir.path(), &["migrate"], &with_k1);
    assert!(out.status.success(), "{}", text(&out));
    let out = integro(
        dir.path(),
        &["--json", "tenant", "create", "Acme"],
        &with_k1,
    );
    assert!(out.status.success(), "{}", text(&out));
    let tenant = json(&out)["id"].as_str().unwrap().to_string();
    let out = integro(
        dir.path(),
        &[
            "--json",
            "bot",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "Helper",
            "--fallback-reply",
            "Hi!",
        ],
        &with_k1,
    );
    assert!(out.status.success(), "{}", text(&out));
    let bot = json(&out)["id"].as_str().unwrap().to_string();
    let out = integro(
        dir.path(),
        &[
            "--json",
            "account",
            "add",
            "--tenant",
            &tenant,
            "--bot",
            &bot,
            "--kind",
            "twilio_whatsapp",
            "--name",
            "Main",
            "--credential",
            "account_sid=AC1",
            "--credential",
            "auth_token=secret-token-1",
            "--credential",
            "phone_number=+14155238886",
        ],
        &with_k1,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !dir.path().join("master.key").exists(),
        "with INTEGRO_MASTER_KEY no key file is written"
    );
    let (ok, status, _) = doctor_check(dir.path(), "stored secrets", &with_k1);
    assert!(ok && status == "ok", "K1 opens its own secret");

    // The new key alone cannot open what K1 sealed: doctor says so, and a
    // rotation without the old key fails and changes nothing.
    let only_k2 = [("INTEGRO_MASTER_KEY", k2.as_str())];
    let (ok, status, detail) = doctor_check(dir.path(), "stored secrets", &only_k2);
    assert!(!ok && status == "fail", "{status}: {detail}");
    assert!(detail.contains("INTEGRO_PREVIOUS_MASTER_KEYS"), "{detail}");
    let out = integro(dir.path(), &["secrets", "rotate"], &only_k2);
    assert!(!out.status.success(), "{}", text(&out));
    let (ok, _, _) = doctor_check(dir.path(), "stored secrets", &with_k1);
    assert!(ok, "the failed rotation left K1's secret alone");

    // The README's way.
    let rotating = [
        ("INTEGRO_MASTER_KEY", k2.as_str()),
        ("INTEGRO_PREVIOUS_MASTER_KEYS", k1.as_str()),
    ];
    let (ok, status, _) = doctor_check(dir.path(), "stored secrets", &rotating);
    assert!(
        ok && status == "ok",
        "during the rotation both keys are known"
    );
    let out = integro(dir.path(), &["secrets", "rotate"], &rotating);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Re-sealed 1 secret(s)"),
        "{}",
        text(&out)
    );

    // Afterwards K2 alone opens every secret; K1 alone opens none.
    let (ok, status, detail) = doctor_check(dir.path(), "stored secrets", &only_k2);
    assert!(ok && status == "ok", "{status}: {detail}");
    let (ok, status, detail) = doctor_check(dir.path(), "stored secrets", &with_k1);
    assert!(!ok && status == "fail", "{status}: {detail}");
    // Nothing is left to re-seal…
    let out = integro(dir.path(), &["secrets", "rotate"], &only_k2);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Re-sealed 0 secret(s)"),
        "{}",
        text(&out)
    );
    // …and K2 really opens the secret: a further rotation, with K2 as the
    // only previous key, has to open it to seal it again.
    let out = integro(
        dir.path(),
        &["secrets", "rotate"],
        &[
            ("INTEGRO_MASTER_KEY", k3.as_str()),
            ("INTEGRO_PREVIOUS_MASTER_KEYS", k2.as_str()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Re-sealed 1 secret(s)"),
        "{}",
        text(&out)
    );
    let out = integro(dir.path(), &["account", "list", "--tenant", &tenant], &[]);
    assert!(!text(&out).contains("secret-token-1"), "{}", text(&out));
}

/// Adds an AI credential straight through the store (the CLI has no
/// command for it; the API's is tested elsewhere), sealed with the data
/// directory's key file.
fn add_ai_credential(dir: &std::path::Path, tenant: &str, base_url: &str) -> String {
    let config = integro_server::Config {
        data_dir: dir.to_path_buf(),
        ..integro_server::Config::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let db = integro_server::startup::open_database(&config, true)
            .await
            .unwrap();
        let (keyring, _) = integro_server::startup::load_keyring(&config).unwrap();
        let mut tx = db.begin().await.unwrap();
        let credential = integro_store::ai_credentials::create(
            &mut tx,
            &keyring,
            &integro_core::Actor::cli(),
            None,
            tenant.parse().unwrap(),
            integro_store::ai_credentials::CredentialFields {
                name: "main".into(),
                provider: "openai".into(),
                base_url: Some(base_url.into()),
                api_key: Some("sk-cli-test-1".into()),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        db.close().await;
        credential.id.to_string()
    })
}

/// `integro ai test`: checks a credential against an OpenAI-compatible
/// server, here a local one the operator allows with INTEGRO_OUTBOUND_ALLOW.
#[test]
fn ai_test_checks_a_credential_against_its_provider() {
    let dir = tempfile::tempdir().unwrap();
    let out = integro(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = integro(dir.path(), &["--json", "tenant", "create", "Acme"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let tenant: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tenant = tenant["id"].as_str().unwrap().to_string();

    let (good, received) = mock_provider(|request| {
        match request.path.as_str() {
        "/v1/models" => Canned {
            status: 200,
            body: r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1686935002,"owned_by":"openai"},{"id":"gpt-4o","object":"model","created":1686935002,"owned_by":"openai"}]}"#.into(),
        },
        "/v1/chat/completions" => Canned {
            status: 200,
            body: r#"{"id":"chatcmpl-1","object":"chat.completion","created":1718203449,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"finish_reason":"length","message":{"role":"assistant","content":"O"}}],"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}"#.into(),
        },
        _ => Canned {
            status: 404,
            body: r#"{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}"#.into(),
        },
    }
    });
    let credential = add_ai_credential(dir.path(), &tenant, &format!("http://{good}/v1"));
    let allow = format!("127.0.0.1:{}", good.port());
    let allowed = [("INTEGRO_OUTBOUND_ALLOW", allow.as_str())];

    let out = integro(dir.path(), &["ai", "test", &credential], &allowed);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("main (openai): OK: the key is valid (2 models available)"),
        "{}",
        text(&out)
    );
    let out = integro(
        dir.path(),
        &["ai", "test", &credential, "--model", "gpt-4o-mini"],
        &allowed,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("main (openai): OK: gpt-4o-mini answered"),
        "{}",
        text(&out)
    );
    {
        let seen = received.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].head.starts_with("get /v1/models "), "{seen:?}");
        assert!(
            seen[1].head.starts_with("post /v1/chat/completions "),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .all(|r| r.head.contains("authorization: bearer sk-cli-test-1")),
            "{seen:?}"
        );
    }

    // Without the operator's exception the outbound URL policy refuses the
    // loopback address, and nothing is sent.
    let out = integro(dir.path(), &["ai", "test", &credential], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("INTEGRO_OUTBOUND_ALLOW"),
        "says how to allow it: {}",
        text(&out)
    );
    assert_eq!(received.lock().unwrap().len(), 2, "nothing more was sent");

    // A provider refusing the key: a failure in plain words.
    let (refusing, _) = mock_provider(|_| {
        Canned {
        status: 401,
        body: r#"{"error":{"message":"Incorrect API key provided: sk-cli-****st-1.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#.into(),
    }
    });
    let bad = add_ai_credential(dir.path(), &tenant, &format!("http://{refusing}/v1"));
    let allow = format!("127.0.0.1:{}", refusing.port());
    let out = integro(
        dir.path(),
        &["ai", "test", &bad],
        &[("INTEGRO_OUTBOUND_ALLOW", allow.as_str())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        said.contains("main (openai): the API key was rejected"),
        "{said}"
    );
    assert!(said.contains("Incorrect API key provided"), "{said}");

    let out = integro(
        dir.path(),
        &["ai", "test", "00000000-0000-0000-0000-000000000000"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
}

/// `integro user create` with a tenant, a role and a generated password:
/// the password is printed once, `user list --tenant` shows the role, and
/// the password signs the user in to a running server.
#[test]
fn user_create_with_a_role_and_a_generated_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = integro(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = integro(dir.path(), &["--json", "tenant", "create", "Acme"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let tenant: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tenant = tenant["id"].as_str().unwrap().to_string();

    let out = integro(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "ann@example.com",
            "--name",
            "Ann",
            "--tenant",
            &tenant,
            "--role",
            "agent",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(
        printed.contains("Created user ann@example.com"),
        "{printed}"
    );
    let password = printed
        .lines()
        .find_map(|l| l.strip_prefix("Password (shown once): "))
        .unwrap_or_else(|| panic!("the generated password is printed: {printed}"))
        .trim()
        .to_string();
    assert!(password.len() >= 12, "{password}");
    assert_eq!(
        printed.matches(&password).count(),
        1,
        "shown once: {printed}"
    );

    let out = integro(dir.path(), &["user", "list", "--tenant", &tenant], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let row = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("ann@example.com"))
        .map(String::from)
        .unwrap_or_else(|| panic!("ann is listed: {}", text(&out)));
    assert!(row.split_whitespace().any(|w| w == "agent"), "{row}");
    assert!(!text(&out).contains(&password), "never shown again");
    let out = integro(
        dir.path(),
        &["--json", "user", "list", "--tenant", &tenant],
        &[],
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["role"], "agent");
    assert_eq!(listed[0]["user"]["email"], "ann@example.com");

    // The password signs Ann in, as an agent of the tenant.
    let (_server, listen) = serve(dir.path());
    let login = |password: &str| {
        http(
            &listen,
            "POST",
            "/api/v1/auth/login",
            None,
            &serde_json::json!({ "email": "ann@example.com", "password": password }).to_string(),
        )
    };
    let (status, body) = login("not-her-password");
    assert_eq!(status, 401, "{body}");
    let (status, body) = login(&password);
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = http(&listen, "GET", "/api/v1/auth/me", Some(&token), "");
    assert_eq!(status, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).unwrap();
    let memberships = me["memberships"].as_array().unwrap();
    assert_eq!(memberships.len(), 1, "{me}");
    assert_eq!(memberships[0]["tenant_id"], tenant.as_str(), "{me}");
    assert_eq!(memberships[0]["role"], "agent", "{me}");
}

/// 64 failed sign-ins (unknown accounts, 8 at a time) leave the server's
/// memory where it was: glibc kept each password hash's large block per
/// arena, and the process grew by hundreds of MiB (ADR 0004).
#[cfg(target_os = "linux")]
#[test]
fn failed_sign_ins_do_not_grow_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let (server, listen) = serve(dir.path());
    let rss_kib = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let target = listen.clone();
    let login = move |i: usize| -> u16 {
        let body =
            format!(r#"{{"email":"nobody{i}@example.com","password":"wrong-password-{i}"}}"#);
        http(&target, "POST", "/api/v1/auth/login", None, &body).0
    };
    let before = rss_kib(server.0.id());
    let mut statuses = Vec::new();
    for round in 0..8 {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let login = login.clone();
                std::thread::spawn(move || login(round * 8 + i))
            })
            .collect();
        statuses.extend(handles.into_iter().map(|h| h.join().unwrap()));
    }
    let after = rss_kib(server.0.id());
    drop(server);
    assert_eq!(statuses.len(), 64);
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// `integro worker` serves `/healthz`, `/readyz` and `/metrics` on its own
/// address, and `integro health` says whether a server there is ready.
#[test]
fn workers_serve_probes_and_health_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    assert!(integro(dir.path(), &["migrate"], &[]).status.success());
    let (worker, probes) = start("worker", dir.path(), &[]);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, body) = http(&probes, "GET", path, None, "");
        assert_eq!(status, 200, "{path}: {body}");
    }
    let url = format!("http://{probes}");
    let out = integro(dir.path(), &["health", "--url", &url], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ready"), "{}", text(&out));

    drop(worker);
    let out = integro(dir.path(), &["health", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot be reached"), "{}", text(&out));
}

/// With `INTEGRO_AUTO_MIGRATE=false`, `serve` refuses a database that is
/// behind and says what to run; after `integro migrate` it starts.
#[test]
fn without_auto_migrate_serve_needs_a_migrated_database() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_address();
    let mut child = Command::new(env!("CARGO_BIN_EXE_integro"))
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .env_remove("INTEGRO_DATABASE_URL")
        .env_remove("INTEGRO_MASTER_KEY")
        .env_remove("INTEGRO_CONFIG")
        .env("INTEGRO_LOG", "warn")
        .env("INTEGRO_AUTO_MIGRATE", "false")
        .env("INTEGRO_ADMIN_PASSWORD", "operator-password-1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut exited = None;
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let Some(status) = exited else {
        let _ = child.kill();
        panic!("serve started on a database that was never migrated");
    };
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    let said = text(&out);
    assert!(said.contains("integro migrate"), "{said}");

    assert!(integro(dir.path(), &["migrate"], &[]).status.success());
    let (_server, _) = serve_with(dir.path(), &[("INTEGRO_AUTO_MIGRATE", "false")]);
}

/// `integro backup` copies the SQLite database (never over a file);
/// `integro restore` puts a copy back, keeps the one it replaces, refuses
/// what is not an Integro database, and refuses while a server answers.
#[test]
fn backups_restore_what_they_copied() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = free_address();
    let env = [("INTEGRO_LISTEN", listen.as_str())];
    assert!(integro(&data, &["migrate"], &env).status.success());
    assert!(
        integro(&data, &["tenant", "create", "Before"], &env)
            .status
            .success()
    );
    let file = dir.path().join("integro-backup.db");
    let out = integro(&data, &["backup", file.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("master key"), "{}", text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let out = integro(&data, &["backup", file.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("exists already"), "{}", text(&out));

    assert!(
        integro(&data, &["tenant", "create", "After"], &env)
            .status
            .success()
    );
    let out = integro(&data, &["restore", file.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", text(&out));
    let out = integro(&data, &["tenant", "list"], &env);
    let listed = text(&out);
    assert!(
        listed.contains("Before") && !listed.contains("After"),
        "{listed}"
    );
    let kept = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("integro.db.before-restore-")
        });
    assert!(kept, "the replaced database is kept");

    // Not an Integro database: refused, nothing replaced.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all").unwrap();
    let out = integro(&data, &["restore", junk.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot be restored"), "{}", text(&out));
    let listed = text(&integro(&data, &["tenant", "list"], &env));
    assert!(listed.contains("Before"), "{listed}");

    // A running server holds the database.
    let (_server, running) = serve(&data);
    let out = integro(
        &data,
        &["restore", file.to_str().unwrap()],
        &[("INTEGRO_LISTEN", running.as_str())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("stop every Integro"), "{}", text(&out));
}

/// On PostgreSQL, `integro backup` names the server's version and the
/// tools to use, and copies nothing.
#[test]
fn backups_of_postgresql_point_at_pg_dump() {
    let Ok(url) = std::env::var("INTEGRO_TEST_POSTGRES_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("never.db");
    let out = integro(
        dir.path(),
        &["backup", file.to_str().unwrap()],
        &[("INTEGRO_DATABASE_URL", url.as_str())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("pg_dump") && said.contains("PostgreSQL 1"),
        "{said}"
    );
    assert!(!file.exists());
}

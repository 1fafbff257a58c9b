//! The `integro` binary as an operator uses it.

use std::process::{Command, Output};

fn integro(data_dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_integro"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("INTEGRO_DATABASE_URL")
        .env_remove("INTEGRO_MASTER_KEY")
        .env_remove("INTEGRO_CONFIG")
        .env("INTEGRO_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("integro runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_integro"))
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .env_remove("INTEGRO_DATABASE_URL")
        .env_remove("INTEGRO_MASTER_KEY")
        .env_remove("INTEGRO_CONFIG")
        .env("INTEGRO_LOG", "warn")
        .env("INTEGRO_ADMIN_PASSWORD", "operator-password-1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(&listen).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = integro(dir.path(), &["doctor", "--listen", &listen], &[]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(up, "the server started");
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

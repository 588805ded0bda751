//! Switching profiles inside the real `hoist` (`P`, like k9s contexts):
//! between two hoistd brokers, and from a hoistd broker to an Entra tenant
//! (the fake Graph) that signs in with a device code shown in a pop-up.
//! Each switch shows a fresh state; the header says where hoist is.

use std::path::Path;

use super::tenant::Tenant;
use super::{LOAD, Pane, device_prompt, env, login_with_token};

fn hoistd_broker(runtime: &tokio::runtime::Runtime) -> hoistd::testing::TestBroker {
    runtime.block_on(
        hoistd::testing::TestBroker::builder()
            .policy(hoist::demo::DEMO_POLICY)
            .token_prefix("demo-")
            .start(),
    )
}

fn pane(config: &Path, args: &str) -> Pane {
    let env = env(config);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Pane::start(args, &env, 120, 36)
}

/// Opens the picker (its cursor on the profile on screen), moves it with
/// `moves` and picks.
fn switch(pane: &Pane, moves: &[&str]) {
    pane.keys(&["P"]);
    pane.wait_for(" Profiles ", LOAD);
    pane.keys(moves);
    pane.keys(&["Enter"]);
}

#[test]
fn switching_between_two_hoistd_profiles_keeps_each_its_own() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut lab = hoistd_broker(&runtime);
    let mut prod = hoistd_broker(&runtime);
    // Signed in to none: it takes static tokens only.
    let mut stage = hoistd_broker(&runtime);
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.toml"),
        format!(
            "default_profile = \"prod\"\n\
             [profiles.lab]\nbroker = \"{}\"\n\
             [profiles.prod]\nbroker = \"{}\"\n\
             [profiles.stage]\nbroker = \"{}\"\n",
            lab.url(),
            prod.url(),
            stage.url()
        ),
    )
    .unwrap();
    login_with_token(config.path(), &["--profile", "lab"], "demo-carol\n");
    login_with_token(config.path(), &["--profile", "prod"], "demo-alice\n");

    let pane = pane(config.path(), "");
    pane.wait_for("prod (hoistd) · alice", LOAD);
    pane.wait_for("Roles (7/7)", LOAD);
    // A favourite here is prod's only.
    pane.keys(&["f"]);
    pane.wait_for("★ ", LOAD);

    // The picker lists both, with their kinds, the one on screen marked.
    pane.keys(&["P"]);
    let picker = pane.wait_for(" Profiles ", LOAD);
    assert!(
        picker
            .lines()
            .any(|l| l.contains("lab") && l.contains("hoistd")),
        "{picker}"
    );
    assert!(
        picker
            .lines()
            .any(|l| l.contains("● prod") && l.contains("hoistd")),
        "{picker}"
    );
    pane.keys(&["Escape"]);

    switch(&pane, &["k"]);
    pane.wait_for("lab (hoistd) · carol", LOAD);
    // carol may ask for fewer roles than alice: these are lab's.
    let lab_screen = pane.wait_for("Roles (6/6)", LOAD);
    assert!(!lab_screen.contains("prod (hoistd)"), "{lab_screen}");
    assert!(!lab_screen.contains("★ "), "a fresh state: {lab_screen}");

    // And back: prod's favourite is still prod's.
    switch(&pane, &["j"]);
    pane.wait_for("prod (hoistd) · alice", LOAD);
    pane.wait_for("★ ", LOAD);
    let saved = std::fs::read_to_string(config.path().join("config.toml")).unwrap();
    let prod_part = saved.split("[profiles.prod]").nth(1).unwrap();
    assert!(prod_part.contains("favourites"), "{saved}");

    // A profile hoist cannot sign in to by itself: said, and prod stays.
    switch(&pane, &["j"]);
    let refused = pane.wait_for("Could not open profile stage", LOAD);
    assert!(
        refused.contains("hoist --profile stage login --with-token"),
        "{refused}"
    );
    assert!(refused.contains("prod (hoistd) · alice"), "{refused}");

    pane.keys(&["q"]);
    pane.wait_for("EXITED rc=0", LOAD);
    runtime.block_on(lab.stop());
    runtime.block_on(prod.stop());
    runtime.block_on(stage.stop());
}

#[test]
fn switching_from_hoistd_to_entra_signs_in_with_a_code_in_a_pop_up() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut broker = hoistd_broker(&runtime);
    let tenant = runtime.block_on(Tenant::start());
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.toml"),
        format!(
            "default_profile = \"work\"\n{}[profiles.work]\nbroker = \"{}\"\n",
            tenant.profile_named("directory"),
            broker.url()
        ),
    )
    .unwrap();
    login_with_token(config.path(), &["--profile", "work"], "demo-alice\n");

    let pane = pane(config.path(), "");
    pane.wait_for("work (hoistd) · alice", LOAD);
    pane.wait_for("Roles (7/7)", LOAD);
    pane.keys(&["P"]);
    let picker = pane.wait_for(" Profiles ", LOAD);
    assert!(
        picker
            .lines()
            .any(|l| l.contains("directory") && l.contains("entra")),
        "{picker}"
    );
    pane.keys(&["k", "Enter"]);

    // Not signed in to the tenant: the pop-up says where and what to type,
    // and hoist waits while the person signs in elsewhere.
    let screen = pane.wait_for("Sign in to profile directory", LOAD);
    let (url, code) = device_prompt(&screen);
    assert!(
        screen.contains("work (hoistd)"),
        "what was on screen stays while it waits: {screen}"
    );
    runtime.block_on(tenant.provider.approve_device_code(&url, &code, "alice"));
    pane.wait_for("directory (entra) · alice@contoso.example", LOAD);
    let roles = pane.wait_for("Roles (4/4)", LOAD);
    assert!(!roles.contains("Sign in to profile"), "{roles}");
    // The sign-in is kept, as `hoist --profile directory login` would.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["--profile", "directory", "whoami"])
        .envs(env(config.path()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("alice@contoso.example"),
        "{status:?}"
    );

    // And back to the broker, still signed in: no pop-up.
    switch(&pane, &["j"]);
    pane.wait_for("work (hoistd) · alice", LOAD);
    pane.wait_for("Roles (7/7)", LOAD);

    pane.keys(&["q"]);
    pane.wait_for("EXITED rc=0", LOAD);
    runtime.block_on(broker.stop());
}

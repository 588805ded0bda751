//! Risk tiers: each tier's terms, a policy's `[tiers]` over them, and roles
//! that may tighten their tier but never loosen it.

use super::*;

const PEOPLE: &str = r#"
[users.alice]
[users.bob]
[users.carol]

[groups]
eng = ["alice", "bob", "carol"]
leads = ["bob", "carol"]
"#;

fn with_role(extra: &str, role: &str) -> Result<Policy, PolicyError> {
    let text = format!(
        "{PEOPLE}{extra}\n[[roles]]\nid = \"db\"\neligible_groups = [\"eng\"]\n\
         approver_groups = [\"leads\"]\ndefault_duration = \"30m\"\n{role}"
    );
    Policy::parse("p.toml", &text)
}

fn refused(extra: &str, role: &str) -> String {
    with_role(extra, role).unwrap_err().to_string()
}

#[test]
fn a_role_without_a_tier_is_tier_3_and_keeps_its_own_terms() {
    let policy = with_role("", "max_duration = \"12h\"\n").unwrap();
    let role = policy.role("db").unwrap();
    assert_eq!(role.tier, UNTIERED);
    assert_eq!(role.shown_tier(), None);
    assert_eq!(policy.role_view(role, "alice").tier, None);
    assert_eq!(role.approvals, 0);
    assert!(!role.ticket_required);
    assert!(role.workloads && role.auto_approve);
    assert_eq!(role.step_up, None);
    assert_eq!(role.max_duration, Duration::from_secs(12 * 3600));
    // Tier 3 sets no longest grant, so the role must.
    let err = refused("", "");
    assert!(
        err.contains("needs a max_duration (tier 3 sets none)"),
        "{err}"
    );
}

#[test]
fn a_tier_0_role_takes_its_tiers_terms() {
    let policy = with_role("", "tier = 0\n").unwrap();
    let role = policy.role("db").unwrap();
    assert_eq!(role.tier, 0);
    assert_eq!(role.approvals, 2);
    assert_eq!(role.max_duration, Duration::from_secs(3600));
    assert!(role.ticket_required);
    assert!(!role.workloads && !role.auto_approve);
    assert_eq!(role.step_up, Some(Duration::from_secs(15 * 60)));
    let view = policy.role_view(role, "alice");
    assert_eq!(view.tier, Some(0));
    assert_eq!(view.approval.approvals, 2);
}

#[test]
fn a_role_may_tighten_its_tier() {
    let policy = with_role(
        "",
        "tier = 1\napprovals = 2\nmax_duration = \"1h\"\nstep_up = \"5m\"\nworkloads = false\n",
    )
    .unwrap();
    let role = policy.role("db").unwrap();
    assert_eq!(role.approvals, 2);
    assert_eq!(role.max_duration, Duration::from_secs(3600));
    assert_eq!(role.step_up, Some(Duration::from_secs(300)));
    assert!(!role.workloads);
    assert!(role.ticket_required);
}

#[test]
fn a_role_that_loosens_its_tier_is_refused_where_it_stands() {
    for (role, why) in [
        (
            "tier = 0\napprovals = 1\n",
            "approvals = 1 is fewer than tier 0 needs (2)",
        ),
        (
            "tier = 0\nmax_duration = \"2h\"\n",
            "max_duration 2h is longer than tier 0 allows (1h)",
        ),
        (
            "tier = 1\nticket_required = false\n",
            "ticket_required = false, but tier 1 requires a ticket",
        ),
        (
            "tier = 0\nstep_up = \"1h\"\n",
            "step_up 1h is longer than tier 0 allows (15m)",
        ),
        (
            "tier = 2\napprovals = 0\n",
            "approvals = 0 is fewer than tier 2 needs (1)",
        ),
        ("tier = 4\n", "tier 4 does not exist"),
    ] {
        let err = refused("", role);
        // The role's table starts on line 10, column 1 of the text.
        assert!(err.starts_with("p.toml:10:1: role `db`: "), "{role}: {err}");
        assert!(err.contains(why), "{role}: {err}");
    }
}

#[test]
fn the_policy_may_redefine_a_tier_and_its_roles_follow() {
    let tiers = "\n[tiers.0]\napprovals = 3\nmax_duration = \"30m\"\nbreak_glass = false\n\
                 step_up = \"5m\"\n";
    let policy = with_role(tiers, "tier = 0\n").unwrap();
    let role = policy.role("db").unwrap();
    assert_eq!(role.approvals, 3);
    assert_eq!(role.max_duration, Duration::from_secs(1800));
    assert_eq!(role.step_up, Some(Duration::from_secs(300)));
    // Untouched keys keep their built-in value.
    assert!(role.ticket_required);
    assert_eq!(policy.tiers[1], tiers::builtin(1));

    let err = refused(tiers, "tier = 0\nbreak_glass = true\n");
    assert!(
        err.contains("break_glass = true, but tier 0 allows no break-glass"),
        "{err}"
    );
    let err = refused("\n[tiers.7]\napprovals = 1\n", "max_duration = \"1h\"\n");
    assert!(
        err.contains("[tiers.7]: tiers are 0 (most critical) to 3"),
        "{err}"
    );
    let err = refused(
        "\n[tiers.01]\napprovals = 3\n[tiers.1]\napprovals = 1\n",
        "max_duration = \"1h\"\n",
    );
    assert!(err.contains("[tiers.01]: tiers are 0"), "{err}");
    let err = refused("\n[tiers.1]\nhours = 1\n", "max_duration = \"1h\"\n");
    assert!(err.contains("unknown field `hours`"), "{err}");
}

#[test]
fn workload_rules_obey_their_roles_tier() {
    let oidc = "\n[[oidc]]\nissuer = \"https://ci.example\"\nclient_id = \"hoist\"\n";
    let rule = |approval: &str| {
        format!(
            "\n[[workloads]]\nname = \"deploy\"\nissuer = \"https://ci.example\"\n\
             audience = \"hoist-ci\"\nclaims = {{ sub = \"repo:*\" }}\n\
             roles = [{{ role = \"db\", max_ttl_minutes = 10, approval = \"{approval}\" }}]\n"
        )
    };
    let role = "tier = 2\n";
    let text = |approval: &str, tier: &str| {
        format!(
            "{PEOPLE}{oidc}\n[[roles]]\nid = \"db\"\neligible_groups = [\"eng\"]\n\
             approver_groups = [\"leads\"]\ndefault_duration = \"30m\"\n{tier}{}",
            rule(approval)
        )
    };
    if let Err(err) = Policy::parse("p.toml", &text("person", role)) {
        panic!("{err}");
    }
    let err = Policy::parse("p.toml", &text("automatic", role))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tier 2, which allows no automatic approval"),
        "{err}"
    );
    let err = Policy::parse("p.toml", &text("person", "tier = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("(tier 0) allows no workloads"), "{err}");
}

/// A workload rule that does not say how it is approved does not waive
/// the approvals its role asks of people: unset is a person's approval
/// then, and automatic only for a role that needs none.
#[test]
fn a_workload_rule_waives_a_roles_approvals_only_when_it_says_so() {
    use crate::policy::workloads::Approval;
    let text = |approvals: u32| {
        format!(
            "{PEOPLE}\n[[oidc]]\nissuer = \"https://ci.example\"\nclient_id = \"hoist\"\n\
             \n[[roles]]\nid = \"db\"\neligible_groups = [\"eng\"]\n\
             approver_groups = [\"leads\"]\napprovals = {approvals}\ndefault_duration = \"30m\"\n\
             max_duration = \"1h\"\n\
             \n[[workloads]]\nname = \"deploy\"\nissuer = \"https://ci.example\"\n\
             audience = \"hoist-ci\"\nclaims = {{ sub = \"repo:acme/app:ref:refs/heads/main\" }}\n\
             roles = [{{ role = \"db\", max_ttl_minutes = 10 }}]\n"
        )
    };
    for (approvals, approval) in [(2, Approval::Person), (0, Approval::Automatic)] {
        let policy = match Policy::parse("p.toml", &text(approvals)) {
            Ok(policy) => policy,
            Err(err) => panic!("{approvals}: {err}"),
        };
        assert_eq!(
            policy.workloads[0].roles[0].approval, approval,
            "{approvals}"
        );
    }
}

/// A rule trusting a hosted service's issuer (GitHub Actions, GitLab.com,
/// Buildkite, HCP Terraform) pins whose jobs: in `sub` before any wildcard, or by an owner claim.
/// `repo:acme*` would match `acme-evil`'s repositories too.
#[test]
fn a_rule_trusting_a_shared_issuer_pins_the_owner() {
    let text = |claims: &str| {
        format!(
            "{PEOPLE}\n[[roles]]\nid = \"db\"\neligible_groups = [\"eng\"]\n\
             default_duration = \"30m\"\nmax_duration = \"1h\"\n\
             \n[[workloads]]\nname = \"deploy\"\n\
             issuer = \"https://token.actions.githubusercontent.com\"\n\
             audience = \"hoist-ci\"\nclaims = {{ {claims} }}\n\
             roles = [{{ role = \"db\", max_ttl_minutes = 10 }}]\n"
        )
    };
    for refused in [
        r#"sub = "repo:*""#,
        r#"sub = "repo:acme*""#,
        r#"sub = "repo:*/app:ref:refs/heads/main""#,
        r#"sub = "repo:*", repository_owner = "acme*""#,
    ] {
        match Policy::parse("p.toml", &text(refused)) {
            Ok(_) => panic!("{refused} was accepted"),
            Err(err) => assert!(
                err.to_string().contains("signs the jobs of every account"),
                "{refused}: {err}"
            ),
        }
    }
    for accepted in [
        r#"sub = "repo:acme/*""#,
        r#"sub = "repo:acme/app:ref:refs/heads/release-*""#,
        r#"sub = "repo:*", repository_owner_id = "12345""#,
    ] {
        if let Err(err) = Policy::parse("p.toml", &text(accepted)) {
            panic!("{accepted}: {err}");
        }
    }
    // Buildkite and HCP Terraform name the organization, ended by `:`.
    for (issuer, claim) in [
        ("https://agent.buildkite.com", "organization_slug"),
        ("https://app.terraform.io", "terraform_organization_name"),
    ] {
        let text = |claims: &str| {
            text(claims).replace("https://token.actions.githubusercontent.com", issuer)
        };
        for refused in [
            r#"sub = "organization:acme*""#.to_string(),
            r#"sub = "organization:*:pipeline:deploy:*""#.to_string(),
            format!(r#"sub = "organization:*", {claim} = "acme*""#),
        ] {
            match Policy::parse("p.toml", &text(&refused)) {
                Ok(_) => panic!("{issuer}: {refused} was accepted"),
                Err(err) => assert!(
                    err.to_string().contains("`organization:OWNER:...`"),
                    "{refused}: {err}"
                ),
            }
        }
        for accepted in [
            r#"sub = "organization:acme:*""#.to_string(),
            format!(r#"sub = "organization:*", {claim} = "acme""#),
        ] {
            if let Err(err) = Policy::parse("p.toml", &text(&accepted)) {
                panic!("{issuer}: {accepted}: {err}");
            }
        }
    }
    // Google signs a token for any account, for any audience it names: an
    // account's `sub` exactly, or its email or domain pinned.
    let google = |claims: &str| {
        text(claims).replace(
            "https://token.actions.githubusercontent.com",
            "https://accounts.google.com",
        )
    };
    match Policy::parse("p.toml", &google(r#"sub = "1*""#)) {
        Ok(_) => panic!("any Google account was accepted"),
        Err(err) => assert!(err.to_string().contains("does not name one"), "{err}"),
    }
    for accepted in [
        r#"sub = "104857392018475629103""#,
        r#"sub = "1*", email = "deploy@acme-prod.iam.gserviceaccount.com""#,
    ] {
        if let Err(err) = Policy::parse("p.toml", &google(accepted)) {
            panic!("{accepted}: {err}");
        }
    }
}

/// A `*` that goes on from within a repository's (or project's) name in
/// `sub` matches the owner's other repositories whose names begin so:
/// `repo:acme/app*` is `acme/app-internal`'s jobs too. It must be followed
/// by the `:` that ends the name, so that such is clearly meant.
#[test]
fn a_wildcard_within_a_repositorys_name_must_say_it_means_others() {
    let text = |issuer: &str, sub: &str| {
        format!(
            "{PEOPLE}\n[[roles]]\nid = \"db\"\neligible_groups = [\"eng\"]\n\
             default_duration = \"30m\"\nmax_duration = \"1h\"\n\
             \n[[workloads]]\nname = \"deploy\"\nissuer = \"{issuer}\"\n\
             audience = \"hoist-ci\"\nclaims = {{ sub = \"{sub}\", repository_owner = \"acme\" }}\n\
             roles = [{{ role = \"db\", max_ttl_minutes = 10 }}]\n"
        )
    };
    let (github, gitlab) = (
        "https://token.actions.githubusercontent.com",
        "https://gitlab.com",
    );
    for (issuer, refused, hint) in [
        (github, "repo:acme/app*", "`repo:acme/app:*`"),
        (
            gitlab,
            "project_path:acme/ops/app*",
            "`project_path:acme/ops/app:*`",
        ),
    ] {
        match Policy::parse("p.toml", &text(issuer, refused)) {
            Ok(_) => panic!("{refused} was accepted"),
            Err(err) => assert!(
                err.to_string().contains("whose name begins") && err.to_string().contains(hint),
                "{refused}: {err}"
            ),
        }
    }
    for (issuer, accepted) in [
        (github, "repo:acme/app*:*"),
        (github, "repo:acme/app:*"),
        (github, "repo:acme/*"),
        (github, "repo:*"),
        (github, "repo:acme/app:ref:refs/heads/release-*"),
        (gitlab, "project_path:acme/ops/*"),
    ] {
        if let Err(err) = Policy::parse("p.toml", &text(issuer, accepted)) {
            panic!("{accepted}: {err}");
        }
    }
}

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::config::Env;

fn config(pairs: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    Config::resolve(&[], &env).unwrap()
}

#[test]
fn keys_separate_hosts_and_identities_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path().join("t.json"));
    let a = Broker::new(
        config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "s3cret-1")]),
        opts.clone(),
    );
    let b = Broker::new(
        config(&[("DATABRICKS_HOST", "b"), ("DATABRICKS_TOKEN", "s3cret-1")]),
        opts.clone(),
    );
    let c = Broker::new(
        config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "s3cret-2")]),
        opts.clone(),
    );
    let m = Broker::new(
        config(&[
            ("DATABRICKS_HOST", "a"),
            ("DATABRICKS_CLIENT_ID", "cid"),
            ("DATABRICKS_CLIENT_SECRET", "s3cret-3"),
        ]),
        opts,
    );
    let keys: HashSet<String> = [a, b, c, m].into_iter().map(|x| x.unwrap().key).collect();
    assert_eq!(keys.len(), 4);
    assert!(keys.contains("https://a pat:oauth-m2m:cid"));
    assert!(keys.iter().all(|k| !k.contains("s3cret")), "{keys:?}");
}

#[test]
fn every_strategy_keys_on_its_principal() {
    use base64::Engine as _;
    let jwt = |sub: &str, exp: u64| {
        let claims = format!(r#"{{"iss":"https://idp","sub":"{sub}","exp":{exp}}}"#);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("h.{}.sig", b64.encode(claims))
    };
    let of = |auth: &str, pairs: &[(&str, &str)], oidc: Option<String>| {
        let mut c = config(&[("DATABRICKS_HOST", "a")]);
        for (k, v) in pairs {
            c.set(k, *v);
        }
        c.set("auth_type", auth);
        c.ambient.oidc_token = oidc.map(Secret::new);
        identity(&c)
    };
    let alice = of("basic", &[("username", "alice"), ("password", "pw-secret")], None);
    let bob = of("basic", &[("username", "bob"), ("password", "pw-secret")], None);
    assert_eq!(alice, "basic:alice");
    assert_ne!(alice, bob);
    // The same OIDC subject with a new ID token is the same principal; another subject is not.
    let s1 = of("env-oidc", &[("client_id", "sp")], Some(jwt("repo:a", 1)));
    assert_eq!(s1, of("env-oidc", &[("client_id", "sp")], Some(jwt("repo:a", 2))));
    assert_ne!(s1, of("env-oidc", &[("client_id", "sp")], Some(jwt("repo:b", 1))));
    assert_ne!(s1, of("env-oidc", &[("client_id", "sp2")], Some(jwt("repo:a", 1))));
    assert_ne!(
        of("env-oidc", &[], Some("opaque-1".into())),
        of("env-oidc", &[], Some("opaque-2".into()))
    );
    assert_eq!(
        of(
            "file-oidc",
            &[("client_id", "sp"), ("oidc_token_filepath", "/run/t1")],
            None
        ),
        "file-oidc:sp:/run/t1"
    );
    assert_ne!(
        of("file-oidc", &[("oidc_token_filepath", "/run/t1")], None),
        of("file-oidc", &[("oidc_token_filepath", "/run/t2")], None)
    );
    let md = of(
        "metadata-service",
        &[("metadata_service_url", "http://127.0.0.1:1/s3cret-md")],
        None,
    );
    assert_ne!(
        md,
        of(
            "metadata-service",
            &[("metadata_service_url", "http://127.0.0.1:1/other")],
            None
        )
    );
    let cli = |pairs: &[(&str, &str)]| of("databricks-cli", pairs, None);
    let distinct: HashSet<String> = [
        cli(&[]),
        cli(&[("databricks_cli_path", "/opt/a/databricks")]),
        cli(&[("databricks_cli_path", "/opt/b/databricks")]),
        cli(&[("databricks_cli_path", "/opt/a/databricks"), ("profile", "dev")]),
    ]
    .into_iter()
    .collect();
    assert_eq!(distinct.len(), 4);
    let all = [alice, bob, s1, md, cli(&[])].join(" ");
    assert!(
        !all.contains("s3cret") && !all.contains("pw-secret") && !all.contains("repo:a"),
        "{all}"
    );
}

#[test]
fn one_rotation_lock_per_cache_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "t")]);
    let a = Broker::new(cfg.clone(), options(dir.path().join("c").join("t.json"))).unwrap();
    let held = a.lock_rotation().unwrap();
    let err = a.clone().lock_rotation().unwrap_err().to_string();
    assert!(
        err.contains(&format!("another rotation (pid {})", std::process::id())),
        "{err}"
    );
    let other = Broker::new(cfg, options(dir.path().join("c").join("other.json"))).unwrap();
    drop(other.lock_rotation().unwrap());
    drop(held);
    drop(a.lock_rotation().unwrap());
    let lock = std::fs::metadata(dir.path().join("c").join("t.json.rotation.lock")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&lock.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn a_cleanup_keeps_every_id_the_cache_records() {
    let mut cache = CacheFile::default();
    let pending = |id: &str, held: bool| Pending {
        token_id: id.into(),
        expires_at: 10.0,
        attempts: 0,
        next_attempt_at: 0.0,
        last_error: None,
        replaced_at: 0.0,
        held,
    };
    let entry = |id: &str, minted: &[&str], pend: Vec<Pending>| Entry {
        host: "h".into(),
        identity: "i".into(),
        token: "t".into(),
        token_id: id.into(),
        created_at: 0.0,
        expires_at: 10.0,
        minted: minted
            .iter()
            .map(|m| Minted {
                token_id: (*m).into(),
                expires_at: 10.0,
            })
            .collect(),
        pending: pend,
        hook_pending: None,
    };
    cache.entries.insert(
        "a".into(),
        entry("cur-a", &["cur-a", "old-a"], vec![pending("old-a", false)]),
    );
    cache
        .entries
        .insert("b".into(), entry("cur-b", &["held-b"], vec![pending("held-b", true)]));
    cache.entries.insert("c".into(), entry("", &[], vec![]));
    let ids: std::collections::BTreeSet<String> = cache.protected_ids().into_iter().collect();
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        ["cur-a", "cur-b", "held-b", "old-a"]
    );
}

#[test]
fn kinds_resolve_from_the_strategy_and_key_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let m2m = config(&[
        ("DATABRICKS_HOST", "a"),
        ("DATABRICKS_CLIENT_ID", "cid"),
        ("DATABRICKS_CLIENT_SECRET", "s"),
    ]);
    let pat = config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "t")]);
    let with = |kind| Options {
        kind,
        ..options(dir.path().join("t.json"))
    };
    let b = Broker::new(m2m.clone(), with(Kind::Auto)).unwrap();
    assert_eq!(
        (b.kind(), b.strategy(), b.key.as_str()),
        (Kind::Oauth, "oauth-m2m", "https://a oauth:oauth-m2m:cid")
    );
    assert_eq!(Broker::new(m2m, with(Kind::Pat)).unwrap().kind(), Kind::Pat);
    assert_eq!(Broker::new(pat.clone(), with(Kind::Auto)).unwrap().kind(), Kind::Pat);
    let err = Broker::new(pat, with(Kind::Oauth)).err().unwrap().to_string();
    assert!(err.contains("the pat strategy yields no OAuth token"), "{err}");
    assert_eq!(Kind::parse("kind", "oauth").unwrap(), Kind::Oauth);
    assert!(
        Kind::parse("kind", "OAUTH")
            .unwrap_err()
            .to_string()
            .starts_with("kind: ")
    );
    assert_eq!(Kind::Auto.default_margin(true), DEFAULT_OAUTH_MARGIN);
    assert_eq!(Kind::Auto.default_margin(false), DEFAULT_MARGIN);
}

#[test]
fn bad_options_name_their_parameter() {
    let cfg = config(&[("DATABRICKS_HOST", "a"), ("DATABRICKS_TOKEN", "t")]);
    let mut o = options(PathBuf::from("/x"));
    o.refresh_margin = 3600;
    let err = Broker::new(cfg.clone(), o).err().unwrap().to_string();
    assert!(err.starts_with("refresh_margin: "), "{err}");
    let mut o = options(PathBuf::from("/x"));
    o.lifetime_seconds = 0;
    let err = Broker::new(cfg, o).err().unwrap().to_string();
    assert!(err.starts_with("lifetime_seconds: "), "{err}");
}

#[test]
fn retry_delays_back_off_to_an_hour() {
    let d: Vec<f64> = (1..=10).map(revoke_retry_delay).collect();
    assert_eq!(&d[..4], &[0.0, 30.0, 60.0, 120.0]);
    assert!((d[9] - 3600.0).abs() < f64::EPSILON);
}

#[test]
fn default_cache_path_prefers_an_absolute_xdg_cache_home() {
    let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    };
    let p = default_cache_path(&env(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/h")])).unwrap();
    assert_eq!(p, PathBuf::from("/xdg/devbox-native/token.json"));
    let p = default_cache_path(&env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])).unwrap();
    assert_eq!(p, PathBuf::from("/h/.cache/devbox-native/token.json"));
}

#[test]
fn a_corrupt_cache_reads_as_empty_and_is_kept_aside_when_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.json");
    std::fs::write(&p, "{not json").unwrap();
    assert!(load_cache(&p).unwrap().entries.is_empty());
    save_cache(&p, &CacheFile::default()).unwrap();
    let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("t.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), b"{not json");
    assert_eq!(
        std::fs::metadata(&aside[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        protected_token_ids(&dir.path().join("missing.json"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_newer_cache_format_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.json");
    let newer = r#"{"version": 2, "entries": {}, "future": true}"#;
    std::fs::write(&p, newer).unwrap();
    let err = load_cache(&p).err().unwrap().to_string();
    assert!(err.contains("format 2, newer than this build's 1"), "{err}");
    let err = save_cache(&p, &CacheFile::default()).unwrap_err().to_string();
    assert!(err.contains("left untouched"), "{err}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), newer);
}

#[test]
fn a_non_utf8_home_or_cache_folder_is_kept_as_bytes() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    struct Bytes(Vec<(&'static str, OsString)>);
    impl Env for Bytes {
        fn var(&self, name: &str) -> Option<String> {
            self.var_os(name).map(|v| v.to_string_lossy().into_owned())
        }
        fn var_os(&self, name: &str) -> Option<OsString> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        }
        fn home(&self) -> Option<PathBuf> {
            None
        }
    }
    let raw = |b: &[u8]| OsString::from_vec(b.to_vec());
    let p = default_cache_path(&Bytes(vec![("HOME", raw(b"/h\xff"))])).unwrap();
    assert_eq!(p.into_os_string().into_vec(), b"/h\xff/.cache/devbox-native/token.json");
    let p = default_cache_path(&Bytes(vec![("XDG_CACHE_HOME", raw(b"/x\xfe"))])).unwrap();
    assert_eq!(p.into_os_string().into_vec(), b"/x\xfe/devbox-native/token.json");
}

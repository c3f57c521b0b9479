//! `labstream token`: make signing keys, mint tokens for sensors, gateways and people,
//! and look inside a token. Private keys are written owner-only and never overwritten
//! unless asked; `issue` prints only the token on stdout so scripts can capture it.

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use labstream_schemas::auth::{self, Issuer, KeyAlg, Scope};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
#[command(
    after_help = "A typical setup:\n  labstream token keygen\n  export LABSTREAM__AUTH__PUBLIC_KEY=data/keys/public.pem\n  TOKEN=$(labstream token issue --key data/keys/private.pem --sub gateway-lab2 --sensors 'door-*')\n  curl -H \"Authorization: Bearer $TOKEN\" ..."
)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Generate a signing key pair: private.pem (mints tokens; keep it secret) and
    /// public.pem (what labstream verifies tokens with).
    Keygen(KeygenArgs),
    /// Mint a signed token; prints only the token on stdout and a summary on stderr.
    Issue(IssueArgs),
    /// Print the header and claims of a token as JSON, without verifying it.
    Inspect(InspectArgs),
    /// Print a public key as a JWKS (`{"keys": [...]}`), for `auth.jwks` or an identity provider.
    Jwks(JwksArgs),
}

#[derive(Args)]
struct KeygenArgs {
    /// Key type; the token algorithm follows from it (ed25519 -> EdDSA, es256 -> ES256).
    /// For RSA keys use `openssl genpkey`; labstream reads them too.
    #[arg(long, value_enum, default_value_t = KeygenAlg::Ed25519)]
    alg: KeygenAlg,
    /// Folder to write private.pem and public.pem into; created if missing.
    #[arg(long, default_value = "./data/keys")]
    out_dir: PathBuf,
    /// Replace existing key files. Tokens signed with the old key stop verifying.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeygenAlg {
    /// Ed25519 (JWT alg EdDSA): small, fast, the default.
    Ed25519,
    /// ECDSA P-256 (JWT alg ES256), for clients that lack EdDSA.
    Es256,
}

impl From<KeygenAlg> for KeyAlg {
    fn from(alg: KeygenAlg) -> Self {
        match alg {
            KeygenAlg::Ed25519 => KeyAlg::Ed25519,
            KeygenAlg::Es256 => KeyAlg::Es256,
        }
    }
}

#[derive(Args)]
struct IssueArgs {
    /// Private key PEM (Ed25519, EC P-256 or RSA), e.g. data/keys/private.pem.
    #[arg(long)]
    key: PathBuf,
    /// Who the token is for, e.g. `gateway-lab2` or `alice`; shows up in logs.
    #[arg(long)]
    sub: String,
    /// A scope to grant; repeat or separate with commas. One of samples:write, query,
    /// experiments:write, alerts:read, admin (admin implies all others).
    #[arg(long = "scope", value_delimiter = ',', default_value = "samples:write")]
    scopes: Vec<Scope>,
    /// Limit the sensor ids the token may write, comma-separated; a trailing `*`
    /// matches by prefix (`door-*`). Without it the token may write any sensor.
    #[arg(long, value_delimiter = ',')]
    sensors: Option<Vec<String>>,
    /// Lifetime, e.g. `1h`, `30d`, `1y`.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Key id for the header, when the server verifies with a JWKS of several keys.
    #[arg(long)]
    kid: Option<String>,
    /// Audience claim; must match the server's auth.audience.
    #[arg(long, default_value = auth::DEFAULT_AUDIENCE)]
    aud: String,
    /// Issuer claim; needed when the server sets auth.issuer.
    #[arg(long)]
    iss: Option<String>,
}

#[derive(Args)]
struct InspectArgs {
    /// The token, or `-` to read it from standard input.
    token: String,
}

#[derive(Args)]
struct JwksArgs {
    /// Public key PEM, e.g. data/keys/public.pem.
    #[arg(long)]
    key: PathBuf,
    /// Key id to put in the set; tokens then name it with `--kid`.
    #[arg(long)]
    kid: Option<String>,
}

pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Keygen(args) => keygen(args),
        TokenCommand::Issue(args) => issue(args),
        TokenCommand::Inspect(args) => inspect(args),
        TokenCommand::Jwks(args) => jwks(args),
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let private_path = args.out_dir.join("private.pem");
    let public_path = args.out_dir.join("public.pem");
    if !args.force {
        for path in [&private_path, &public_path] {
            if path.exists() {
                bail!(
                    "{} exists; pass --force to replace the key pair (tokens signed with the old key will stop verifying)",
                    path.display()
                );
            }
        }
    }
    let alg = KeyAlg::from(args.alg);
    let (private_pem, public_pem) = auth::generate_keypair(alg)?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    write_atomically(&private_path, private_pem.as_bytes(), true)?;
    write_atomically(&public_path, public_pem.as_bytes(), false)?;

    // Absolute, so the printed settings work whatever folder the server starts in.
    let public_abs = std::fs::canonicalize(&public_path).unwrap_or(public_path.clone());
    let private_abs = std::fs::canonicalize(&private_path).unwrap_or(private_path.clone());
    outln!(
        "wrote {} ({} private key, owner-only; it mints tokens, keep it secret)",
        private_abs.display(),
        alg.jwt_alg()
    )?;
    outln!("wrote {}", public_abs.display())?;
    outln!()?;
    outln!("Verify tokens with the public key, in the environment:")?;
    outln!("  LABSTREAM__AUTH__PUBLIC_KEY={}", public_abs.display())?;
    outln!("or in labstream.toml:")?;
    outln!("  [auth]")?;
    outln!("  public_key = {:?}", public_abs.display().to_string())?;
    outln!()?;
    outln!("Mint a token:")?;
    outln!(
        "  labstream token issue --key {} --sub gateway-1 --scope samples:write",
        private_abs.display()
    )?;
    Ok(())
}

/// Writes through a temporary file and a rename, so an interrupted run never leaves a
/// half-written key; the private key is created owner-only before any byte is written.
fn write_atomically(path: &Path, contents: &[u8], private: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let issuer = Issuer::from_pem_file(&args.key)?
        .with_audience(args.aud)
        .with_issuer(args.iss);
    let sensors = args
        .sensors
        .map(|list| list.into_iter().map(|s| s.trim().to_owned()).collect());
    let claims = issuer.claims(&args.sub, &args.scopes, sensors, args.ttl)?;
    let token = issuer.sign(&claims, args.kid)?;
    outln!("{token}")?;
    let sensors = match &claims.sensors {
        Some(list) => list.join(","),
        None => "any".to_owned(),
    };
    eprintln!(
        "issued {} token for {}: scope \"{}\", sensors {}, expires {} (in {})",
        issuer.alg().jwt_alg(),
        claims.sub,
        claims.scope,
        sensors,
        rfc3339(claims.exp),
        humantime::format_duration(args.ttl),
    );
    Ok(())
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let token = if args.token == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("reading the token from standard input")?;
        buf
    } else {
        args.token
    };
    let (header, claims) = auth::inspect_unverified(&token)?;
    eprintln!("note: NOT verified; the signature, audience and expiry were not checked");
    for name in ["iat", "nbf", "exp"] {
        if let Some(secs) = claims.get(name).and_then(|v| v.as_u64()) {
            eprintln!("{name}: {}", rfc3339(secs));
        }
    }
    if let Some(exp) = claims.get("exp").and_then(|v| v.as_u64())
        && exp < now_secs()
    {
        eprintln!("note: the token has expired");
    }
    let out = serde_json::json!({ "header": header, "claims": claims });
    outln!("{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}

fn jwks(args: JwksArgs) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    outln!("{}", auth::jwks_from_public_pem(&pem, args.kid.as_deref())?)?;
    Ok(())
}

fn now_secs() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{secs} (out of range)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        token: TokenArgs,
    }

    fn parse(args: &[&str]) -> TokenCommand {
        let mut argv = vec!["token"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().token.command
    }

    #[test]
    fn issue_defaults_and_lists() {
        let TokenCommand::Issue(args) = parse(&["issue", "--key", "k.pem", "--sub", "g"]) else {
            panic!("not issue");
        };
        assert_eq!(args.scopes, [Scope::SamplesWrite]);
        assert_eq!(args.ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(args.aud, "labstream");
        assert!(args.sensors.is_none());

        let TokenCommand::Issue(args) = parse(&[
            "issue",
            "--key",
            "k.pem",
            "--sub",
            "g",
            "--scope",
            "query",
            "--scope",
            "alerts:read,admin",
            "--sensors",
            "door-3,door-*",
            "--ttl",
            "2h",
        ]) else {
            panic!("not issue");
        };
        assert_eq!(args.scopes, [Scope::Query, Scope::AlertsRead, Scope::Admin]);
        assert_eq!(
            args.sensors.unwrap(),
            ["door-3".to_string(), "door-*".to_string()]
        );
        assert_eq!(args.ttl, Duration::from_secs(7200));
    }

    #[test]
    fn unknown_scope_is_a_usage_error() {
        let err = Cli::try_parse_from([
            "token", "issue", "--key", "k", "--sub", "g", "--scope", "write",
        ])
        .err()
        .unwrap();
        assert!(err.to_string().contains("unknown scope"), "{err}");
    }

    #[test]
    fn keygen_writes_an_owner_only_private_key_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys");
        let args = |force| KeygenArgs {
            alg: KeygenAlg::Ed25519,
            out_dir: out.clone(),
            force,
        };
        keygen(args(false)).unwrap();
        let private = std::fs::read_to_string(out.join("private.pem")).unwrap();
        let public = std::fs::read_to_string(out.join("public.pem")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join("private.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = keygen(args(false)).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(
            std::fs::read_to_string(out.join("private.pem")).unwrap(),
            private,
            "the refused run must not touch the key"
        );
        keygen(args(true)).unwrap();
        assert_ne!(
            std::fs::read_to_string(out.join("public.pem")).unwrap(),
            public
        );
        assert!(!out.join("private.pem.tmp").exists());

        // The pair works end to end.
        let token = Issuer::from_pem_file(out.join("private.pem"))
            .unwrap()
            .issue(
                "g",
                &[Scope::SamplesWrite],
                None,
                Duration::from_secs(60),
                None,
            )
            .unwrap();
        auth::Verifier::from_pem_file(out.join("public.pem"))
            .unwrap()
            .verify(&token)
            .unwrap();
    }

    #[test]
    fn es256_keygen() {
        let dir = tempfile::tempdir().unwrap();
        keygen(KeygenArgs {
            alg: KeygenAlg::Es256,
            out_dir: dir.path().to_owned(),
            force: false,
        })
        .unwrap();
        let issuer = Issuer::from_pem_file(dir.path().join("private.pem")).unwrap();
        assert_eq!(issuer.alg(), KeyAlg::Es256);
    }
}

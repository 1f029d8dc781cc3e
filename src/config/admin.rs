//! `[admin]`: where the admin HTTP server listens, the bearer token it requires, and the
//! bounds that keep a flood of connections from taking descriptors the DNS side needs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{parse_duration, positive_count};
use crate::diag::Diagnostics;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    #[serde(default)]
    listen: Option<Spanned<SocketAddr>>,
    #[serde(default)]
    token_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    max_connections: Option<Spanned<i64>>,
    #[serde(default)]
    max_connections_per_source: Option<Spanned<i64>>,
    #[serde(default)]
    idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    header_timeout: Option<Spanned<String>>,
}

/// `[admin]` as the server uses it.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Read from `token_file` at start; every request must carry it when set.
    pub token: Option<String>,
    pub limits: AdminLimits,
}

/// Bounds on the admin server's connections: each one holds a descriptor, and the
/// DNS server, reloads and the report store need theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections open at once; one more is closed at once (not queued).
    pub max_connections: usize,
    /// Connections one source (an address; a /64 for IPv6) may hold.
    pub per_source: usize,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout: Duration,
    /// A request whose headers are not complete this long after the server started
    /// reading them is closed (a client trickling header bytes).
    pub header_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_connections: 256,
            per_source: 32,
            idle_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Loopback by default: the admin server shows every domain's state.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8053";

/// The shortest token accepted: a short one is guessed in a few requests.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// `[admin]`: a listen address other than loopback needs a token; the token file must
/// be readable by spfd, not by other users, and hold a token of at least
/// [`MIN_TOKEN_LENGTH`] characters.
pub(super) fn parse_admin(
    raw: &Spanned<RawAdmin>,
    base: &Path,
    diags: &mut Diagnostics,
) -> Option<AdminConfig> {
    let admin = raw.get_ref();
    let listen = admin.listen.as_ref().map_or_else(
        || DEFAULT_ADMIN_LISTEN.parse().expect("a socket address"),
        |l| *l.get_ref(),
    );
    let limits = parse_limits(admin, diags);
    let token = match &admin.token_file {
        None => None,
        Some(file) => match read_token(&base.join(file.get_ref())) {
            Ok(token) => Some(token),
            Err(message) => {
                diags.error(file.span(), message);
                return None;
            }
        },
    };
    if !listen.ip().is_loopback() && token.is_none() {
        let span = admin.listen.as_ref().map_or(raw.span(), |l| l.span());
        diags.error(
            span,
            format!(
                "admin listen {listen} is not a loopback address: set token_file too, or every \
                 domain's state is open to the network"
            ),
        );
        return None;
    }
    Some(AdminConfig {
        listen,
        token,
        limits: limits?,
    })
}

fn parse_limits(admin: &RawAdmin, diags: &mut Diagnostics) -> Option<AdminLimits> {
    let mut limits = AdminLimits::default();
    let mut ok = true;
    let mut count = |raw: &Option<Spanned<i64>>, what: &str, into: &mut usize| match raw {
        None => {}
        Some(_) => match positive_count(raw, what, diags) {
            Some(n) => *into = n,
            None => ok = false,
        },
    };
    count(
        &admin.max_connections,
        "admin max_connections",
        &mut limits.max_connections,
    );
    let per_source = &admin.max_connections_per_source;
    count(
        per_source,
        "admin max_connections_per_source",
        &mut limits.per_source,
    );
    if let Some(raw) = per_source
        && limits.per_source > limits.max_connections
    {
        diags.error(
            raw.span(),
            format!(
                "admin max_connections_per_source ({}) is above max_connections ({}): lower it",
                limits.per_source, limits.max_connections
            ),
        );
        ok = false;
    }
    for (raw, what, into) in [
        (
            &admin.idle_timeout,
            "admin idle_timeout",
            &mut limits.idle_timeout,
        ),
        (
            &admin.header_timeout,
            "admin header_timeout",
            &mut limits.header_timeout,
        ),
    ] {
        if let Some(raw) = raw {
            match parse_duration(raw, what, diags) {
                Some(d) => *into = d,
                None => ok = false,
            }
        }
    }
    ok.then_some(limits)
}

/// The token in `path`, without surrounding space; the error says what to do.
fn read_token(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("admin token_file {shown}: {e}"))?;
    if let Some(mode) = crate::state::mode_of(path)
        && mode & 0o007 != 0
    {
        return Err(format!(
            "admin token_file {shown} is open to every user (mode {:o}): run `chmod 600 {shown}` \
             (or 640 with spfd's group)",
            mode & 0o777
        ));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("admin token_file {shown} is empty"));
    }
    let length = token.chars().count();
    if length < MIN_TOKEN_LENGTH {
        return Err(format!(
            "admin token_file {shown} holds a token of {length} characters: use at least \
             {MIN_TOKEN_LENGTH}, e.g. `openssl rand -hex 32 > {shown}`"
        ));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::Config;
    use crate::diag::{Diagnostic, SourceFile};

    const MINIMAL: &str =
        "[server]\nnameservers = [\"ns1.example.net\"]\nhostmaster = \"hostmaster@example.net\"\n";

    fn parse(dir: &Path, admin: &str) -> Result<Config, Vec<Diagnostic>> {
        let path = dir.join("spfd.toml");
        Config::parse(&SourceFile::new(
            path.to_str().unwrap(),
            format!("{MINIMAL}[admin]\n{admin}"),
        ))
    }

    fn token_file(dir: &Path, token: &str, mode: u32) -> PathBuf {
        let path = dir.join("admin.token");
        std::fs::write(&path, token).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn limits_have_defaults_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse(dir.path(), "").unwrap();
        assert_eq!(c.admin.unwrap().limits, AdminLimits::default());
        let c = parse(
            dir.path(),
            "max_connections = 8\nmax_connections_per_source = 2\nidle_timeout = \"1s\"\nheader_timeout = \"500ms\"\n",
        )
        .unwrap();
        let limits = c.admin.unwrap().limits;
        assert_eq!((limits.max_connections, limits.per_source), (8, 2));
        assert_eq!(limits.idle_timeout, Duration::from_secs(1));
        assert_eq!(limits.header_timeout, Duration::from_millis(500));
        let err = parse(
            dir.path(),
            "max_connections = 8\nmax_connections_per_source = 9\n",
        )
        .unwrap_err();
        assert!(err[0].message.contains("above max_connections (8)"), "{}", err[0]);
        assert_eq!(err[0].line, 6);
        let err = parse(dir.path(), "max_connections = 0\n").unwrap_err();
        assert!(err[0].message.contains("at least 1"), "{}", err[0]);
        let err = parse(dir.path(), "connections = 3\n").unwrap_err();
        assert!(err[0].message.contains("unknown field"), "{}", err[0]);
    }

    #[test]
    fn a_short_token_or_one_open_to_every_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let admin = format!("token_file = \"{}\"\n", dir.path().join("admin.token").display());
        let file = token_file(dir.path(), "0123456789abcdef\n", 0o640);
        let c = parse(dir.path(), &admin).unwrap();
        assert_eq!(c.admin.unwrap().token.as_deref(), Some("0123456789abcdef"));

        token_file(dir.path(), "s3cret\n", 0o600);
        let err = parse(dir.path(), &admin).unwrap_err();
        assert_eq!(err[0].line, 5);
        assert!(
            err[0]
                .message
                .contains("holds a token of 6 characters: use at least 16"),
            "{}",
            err[0]
        );

        token_file(dir.path(), "0123456789abcdef\n", 0o644);
        let err = parse(dir.path(), &admin).unwrap_err();
        let expected = format!(
            "admin token_file {0} is open to every user (mode 644): run `chmod 600 {0}`",
            file.display()
        );
        assert!(err[0].message.starts_with(&expected), "{}", err[0]);
    }
}

//! `spfd healthcheck`: asks the admin server's `/healthz` over plain HTTP/1.1 and exits
//! 0 on a 200, 1 otherwise.
//!
//! It exists for container HEALTHCHECKs: an image built `FROM scratch` has no curl or
//! wget, so the binary probes itself. A std `TcpStream` with timeouts is enough for one
//! request to loopback; no HTTP client dependency for it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The status line is all we read; a longer first line is not an HTTP server of ours.
const MAX_STATUS_LINE: usize = 1024;

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The admin server's address (`[admin] listen` in the config).
    #[arg(long, default_value = "127.0.0.1:8053")]
    pub addr: SocketAddr,
    /// The path to ask.
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// How long to wait for the connection and for each read or write.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The admin server's `token_file`: sent as `Authorization: Bearer`, which the admin
    /// server requires on every path, /healthz included, once a token is set.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("no answer: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an HTTP status line: {0:?}")]
    NotHttp(String),
    #[error("token file {0}: {1}")]
    Token(PathBuf, String),
}

/// Runs the probe and turns its result into the exit code Docker and podman expect:
/// 0 healthy, 1 unhealthy (2 is reserved by Docker, so failures never use it).
pub fn run(args: &HealthcheckArgs) -> ExitCode {
    let url = format!("http://{}{}", args.addr, args.path);
    let token = match args.token_file.as_deref().map(read_token).transpose() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("spfd healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    match probe(args.addr, &args.path, token.as_deref(), args.timeout) {
        Ok(200) => {
            println!("{url}: 200 OK");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("spfd healthcheck: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("spfd healthcheck: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The token as the admin server reads it: the file's text without surrounding space.
fn read_token(path: &std::path::Path) -> Result<String, ProbeError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ProbeError::Token(path.to_path_buf(), e.to_string()))?;
    match text.trim() {
        "" => Err(ProbeError::Token(path.to_path_buf(), "empty".into())),
        token => Ok(token.to_string()),
    }
}

/// Sends `GET path` to `addr` (with the bearer token, if any) and returns the status
/// code of the answer.
pub fn probe(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<u16, ProbeError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(ProbeError::Connect)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: spfd-healthcheck\r\n\
         {authorization}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    parse_status(&read_status_line(&mut stream)?)
}

/// Reads up to the first CRLF (or the end of the stream).
fn read_status_line(stream: &mut impl Read) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    while line.len() < MAX_STATUS_LINE && !line.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    let end = line.windows(2).position(|w| w == b"\r\n").unwrap_or(line.len());
    Ok(String::from_utf8_lossy(&line[..end]).into_owned())
}

/// `HTTP/1.1 200 OK` → 200. Only HTTP/1.x: that is what we asked for.
fn parse_status(line: &str) -> Result<u16, ProbeError> {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some("HTTP/1.1" | "HTTP/1.0"), Some(code)) if code.len() == 3 => {
            code.parse().map_err(|_| ProbeError::NotHttp(line.to_string()))
        }
        _ => Err(ProbeError::NotHttp(line.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        for (line, expected) in [
            ("HTTP/1.1 200 OK", Some(200)),
            ("HTTP/1.0 503 Service Unavailable", Some(503)),
            ("HTTP/1.1 204", Some(204)),
            ("HTTP/2 200", None),
            ("HTTP/1.1 20 OK", None),
            ("SSH-2.0-OpenSSH_9.2", None),
            ("", None),
        ] {
            assert_eq!(parse_status(line).ok(), expected, "{line:?}");
        }
    }

    #[test]
    fn the_status_line_ends_at_crlf_even_across_reads() {
        let mut answer: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(read_status_line(&mut answer).unwrap(), "HTTP/1.1 200 OK");
        let mut cut: &[u8] = b"HTTP/1.1 503";
        assert_eq!(read_status_line(&mut cut).unwrap(), "HTTP/1.1 503");
    }
}

//! What check_host() is asked ([`Query`], [`EvalOptions`]) and what it answers
//! ([`Verdict`]: the result, the deciding term and the path of domains to it).

use std::fmt;
use std::net::IpAddr;

use super::macros::split_sender;
use super::result::SpfResult;

/// How to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// Apply the processing limits of RFC 7208 4.6.4 (10 lookup terms, 2 void
    /// lookups, 10 MX names, 10 PTR names). Off, a record is judged by what it
    /// authorises however many lookups that takes (to compare a flattened record with
    /// its source); loops and nesting deeper than 50 still end in permerror.
    pub limits: bool,
    /// `%{r}` in explanations: the name of the host doing the check.
    pub receiver: String,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            limits: true,
            receiver: "unknown".to_string(),
        }
    }
}

impl EvalOptions {
    /// The default options with the lookup limits lifted.
    pub fn without_limits() -> Self {
        Self {
            limits: false,
            ..Self::default()
        }
    }
}

/// The message being checked: the arguments of check_host() other than `<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub client_ip: IpAddr,
    /// `<sender>`: the MAIL FROM address, or `postmaster@<helo>` when it is empty.
    pub sender: String,
    pub helo: String,
}

impl Query {
    /// The MAIL FROM identity (RFC 7208 2.4): an empty reverse-path is checked as
    /// `postmaster@<helo>`.
    pub fn new(client_ip: IpAddr, mail_from: &str, helo: &str) -> Self {
        let sender = if mail_from.is_empty() {
            format!("postmaster@{helo}")
        } else {
            mail_from.to_string()
        };
        Self {
            client_ip,
            sender,
            helo: helo.to_string(),
        }
    }

    /// The domain check_host() starts from: the domain of the sender.
    pub fn domain(&self) -> String {
        split_sender(&self.sender).1
    }
}

/// The result of check_host() and how it came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub result: SpfResult,
    /// The exact text of the term that decided: the mechanism that matched (inside
    /// an include, the inner one), or the term that caused an error. `None` when no
    /// term matched (neutral by default) or the record itself was the problem.
    pub decided_by: Option<String>,
    /// The domains traversed, from the one checked to the one holding `decided_by`.
    pub path: Vec<String>,
    /// The include or redirect term that led from each domain of `path` to the next.
    pub via: Vec<String>,
    /// Why, in words, for none, neutral by default, permerror and temperror.
    pub reason: Option<String>,
    /// For fail, the expanded text of the deciding record's `exp=` (RFC 7208 6.2).
    pub explanation: Option<String>,
    /// DNS-querying terms evaluated (include a mx ptr exists redirect).
    pub lookups: usize,
    /// Terms whose lookup found nothing (NXDOMAIN or NODATA).
    pub void_lookups: usize,
}

impl Verdict {
    /// `example.com -> include:_spf.provider.test -> ip4:192.0.2.0/24`
    pub fn trail(&self) -> String {
        let mut out = self.path.first().cloned().unwrap_or_default();
        for (i, via) in self.via.iter().enumerate() {
            out.push_str(" -> ");
            out.push_str(via);
            let next = self.path.get(i + 1).map(String::as_str).unwrap_or("");
            if !via.to_ascii_lowercase().contains(&next.to_ascii_lowercase()) {
                out.push_str(&format!(" ({next})"));
            }
        }
        if let Some(term) = &self.decided_by {
            out.push_str(" -> ");
            out.push_str(term);
        }
        out
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.result, self.trail())?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_from_and_helo_identities() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let q = Query::new(ip, "", "mail.example.org");
        assert_eq!(
            (q.sender.as_str(), q.domain()),
            ("postmaster@mail.example.org", "mail.example.org".to_string())
        );
        let q = Query::new(ip, "a@b@example.com", "h");
        assert_eq!(q.domain(), "example.com");
    }
}

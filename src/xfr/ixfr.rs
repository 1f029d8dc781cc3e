//! The IXFR response (RFC 1995 4): the current SOA, then for each version between the
//! client's and ours the old SOA, the records deleted, the new SOA and the records
//! added, then the current SOA again. When the journal does not reach back to the
//! client's serial, the whole zone in AXFR form; when the client is current, the SOA
//! alone.

use hickory_proto::rr::LowerName;

use super::Transfer;
use super::records::{WireRecord, axfr_sequence};

/// `client`'s serial is at least ours (RFC 1982 serial arithmetic).
fn up_to_date(client: u32, ours: u32) -> bool {
    client == ours || client.wrapping_sub(ours) < (1 << 31)
}

/// The records of the response and what kind it is (for the log).
pub fn sequence(
    xfr: &Transfer,
    apex: &LowerName,
    client: u32,
    soa: &WireRecord,
    records: Vec<WireRecord>,
) -> (&'static str, Vec<WireRecord>) {
    let ours = soa.soa_serial().unwrap_or_default();
    if up_to_date(client, ours) {
        return ("IXFR (up to date)", vec![soa.clone()]);
    }
    let Some(chain) = xfr.journal.chain(apex, client, ours) else {
        return (
            "IXFR (journal too short: whole zone)",
            axfr_sequence(soa, records),
        );
    };
    let mut out = vec![soa.clone()];
    for diff in &chain {
        out.push(diff.old_soa.clone());
        out.extend(diff.deleted.iter().cloned());
        out.push(diff.new_soa.clone());
        out.extend(diff.added.iter().cloned());
    }
    out.push(soa.clone());
    ("IXFR", out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_arithmetic() {
        assert!(up_to_date(5, 5));
        assert!(up_to_date(6, 5));
        assert!(!up_to_date(4, 5));
        assert!(!up_to_date(u32::MAX, 2), "wrapped: 2 is newer");
    }
}

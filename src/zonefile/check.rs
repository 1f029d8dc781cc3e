//! What a zone file may hold: records inside its zone, one SOA at the apex, a CNAME
//! alone at its name, only glue below a delegation (RFC 1034 4.2.1, RFC 2181 10.1);
//! and, against the policy, no record at a name spfd manages (the SPF record at the
//! apex, `_dmarc`, a DKIM selector, the flattened chain's parts, the macro names).

use std::collections::{BTreeMap, HashMap, HashSet};

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::{Place, ZoneData};
use crate::diag::{Diagnostic, Severity};

/// The names a policy publishes in its zone, for [`managed`].
#[derive(Debug, Default)]
pub struct Managed {
    /// The policy publishes an SPF record at the apex (and its chain parts).
    pub spf: bool,
    /// SPF macro mode: every name under `in-addr.<apex>` and `ip6.<apex>`.
    pub macros: bool,
    /// `_dmarc.<apex>` and `<selector>._domainkey.<apex>`.
    pub names: Vec<Name>,
}

/// Refuses records outside the zone, misplaced SOA, CNAME beside other data, data
/// below a delegation other than glue; drops duplicate records and gives every record
/// of an RRset the TTL of its first (RFC 2181 5.2), with a warning.
pub fn structure(data: &mut ZoneData, apex: &Name) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut types: HashMap<LowerName, BTreeMap<RecordType, Place>> = HashMap::new();
    let mut first_ttl: HashMap<(LowerName, RecordType), u32> = HashMap::new();
    let mut seen: HashSet<(LowerName, RecordType, Vec<u8>)> = HashSet::new();
    let mut keep = Vec::with_capacity(data.records.len());
    for (mut record, place) in std::mem::take(&mut data.records) {
        let owner = LowerName::new(&record.name);
        let rtype = record.record_type();
        let error = |message: String| data.at(place, Severity::Error, message);
        if !apex.zone_of(&record.name) {
            out.push(error(format!("{} is outside the zone {apex}", record.name)));
            continue;
        }
        let at_apex = record.name.num_labels() == apex.num_labels();
        match rtype {
            RecordType::SOA if !at_apex => {
                out.push(error("an SOA record belongs at the zone's apex only".into()))
            }
            RecordType::CNAME if at_apex => out.push(error("a CNAME cannot be at the zone's apex".into())),
            RecordType::DS if at_apex => out.push(error(
                "a DS record of the zone itself belongs in the parent zone, not here".into(),
            )),
            _ => {}
        }
        let wire = super::encode_rdata(&record.data).unwrap_or_default();
        if !seen.insert((owner.clone(), rtype, wire)) {
            continue;
        }
        let ttl = *first_ttl.entry((owner.clone(), rtype)).or_insert(record.ttl);
        if ttl != record.ttl {
            out.push(data.at(
                place,
                Severity::Warning,
                format!("TTL {} differs from the {ttl} of the first {rtype} record of {}: {ttl} is used (RFC 2181 5.2)", record.ttl, record.name),
            ));
            record.ttl = ttl;
        }
        let at = types.entry(owner).or_default();
        if matches!(rtype, RecordType::SOA | RecordType::CNAME) && at.contains_key(&rtype) {
            out.push(error(format!(
                "a second {rtype} record at {}: one at most",
                record.name
            )));
        }
        at.entry(rtype).or_insert(place);
        keep.push((record, place));
    }
    data.records = keep;
    for (name, at) in &types {
        if let Some(place) = at.get(&RecordType::CNAME) {
            let others: Vec<String> = at
                .keys()
                .filter(|t| **t != RecordType::CNAME)
                .map(|t| t.to_string())
                .collect();
            if !others.is_empty() {
                out.push(data.at(*place, Severity::Error, format!(
                    "{name} has a CNAME and other records ({}): a CNAME must be alone at its name (RFC 1034 3.6.2)",
                    others.join(", ")
                )));
            }
        }
    }
    occluded(data, apex, &types, &mut out);
    out
}

/// Below a delegation only glue (A, AAAA) is served; at the cut only NS, DS and glue.
fn occluded(
    data: &ZoneData,
    apex: &Name,
    types: &HashMap<LowerName, BTreeMap<RecordType, Place>>,
    out: &mut Vec<Diagnostic>,
) {
    let is_cut = |name: &LowerName| {
        name.num_labels() > apex.num_labels()
            && types.get(name).is_some_and(|t| t.contains_key(&RecordType::NS))
    };
    for (record, place) in &data.records {
        let rtype = record.record_type();
        let owner = LowerName::new(&record.name);
        let mut ancestor = owner.clone();
        let mut cut = None;
        while ancestor.num_labels() > apex.num_labels() {
            if is_cut(&ancestor) {
                cut = Some(ancestor.clone());
            }
            ancestor = ancestor.base_name();
        }
        let Some(cut) = cut else { continue };
        let glue = matches!(rtype, RecordType::A | RecordType::AAAA);
        let allowed = glue || (cut == owner && matches!(rtype, RecordType::NS | RecordType::DS));
        if !allowed {
            out.push(data.at(
                *place,
                Severity::Error,
                format!("{} {rtype} is at or below the delegation at {cut}: only NS, DS and glue A/AAAA records belong there", record.name),
            ));
        }
    }
}

/// Records at names spfd publishes itself are errors (not silent overrides), as are a
/// CNAME or a delegation above one of them (which would hide it).
pub fn managed(data: &ZoneData, apex: &Name, policy: &Managed) -> Vec<Diagnostic> {
    data.records
        .iter()
        .filter_map(|(record, place)| {
            let why = managed_problem(record, apex, policy)?;
            Some(data.at(*place, Severity::Error, why))
        })
        .collect()
}

/// Why spfd cannot serve `record` beside its own names, if it cannot.
pub fn managed_problem(record: &Record, apex: &Name, policy: &Managed) -> Option<String> {
    let rtype = record.record_type();
    let below = usize::from(record.name.num_labels()) - usize::from(apex.num_labels());
    if policy.spf && below == 0 && is_spf(&record.data) {
        return Some(
            "an SPF record (v=spf1) at the apex: spfd publishes the policy's [spf] record there; \
             remove this line"
                .into(),
        );
    }
    if policy.names.contains(&record.name) {
        return Some(format!(
            "{} is published by spfd from the policy ([dmarc] or [dkim.<selector>]); remove this {rtype} record",
            record.name
        ));
    }
    let first = record
        .name
        .iter()
        .nth(below.saturating_sub(1))
        .filter(|_| below > 0);
    if policy.spf && below == 1 && first.is_some_and(is_part_label) {
        return Some(format!(
            "{} has the form of spfd's flattened SPF parts (_<n>-<tag>); use another name",
            record.name
        ));
    }
    let macro_label = |l: &[u8]| l.eq_ignore_ascii_case(b"in-addr") || l.eq_ignore_ascii_case(b"ip6");
    if policy.macros && first.is_some_and(macro_label) {
        return Some(format!(
            "{} is under the names spfd answers in SPF macro mode (in-addr.<zone>, ip6.<zone>)",
            record.name
        ));
    }
    if matches!(rtype, RecordType::CNAME | RecordType::NS) && below > 0 {
        let hidden = policy
            .names
            .iter()
            .find(|n| record.name.zone_of(n) && n.num_labels() > record.name.num_labels())?;
        return Some(format!(
            "this {rtype} at {} would hide {hidden}, which spfd publishes",
            record.name
        ));
    }
    None
}

/// A TXT record that starts with `v=spf1` (RFC 7208 4.5).
fn is_spf(data: &RData) -> bool {
    let RData::TXT(txt) = data else { return false };
    let text: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
    text.len() >= 6 && text[..6].eq_ignore_ascii_case(b"v=spf1") && (text.len() == 6 || text[6] == b' ')
}

/// `_<digits>-<tag>`: the labels of flattened SPF parts.
fn is_part_label(label: &[u8]) -> bool {
    let Some(rest) = label.strip_prefix(b"_") else {
        return false;
    };
    let Some(dash) = rest.iter().position(|b| *b == b'-') else {
        return false;
    };
    dash > 0 && rest[..dash].iter().all(u8::is_ascii_digit) && dash + 1 < rest.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_and_part_labels() {
        use hickory_proto::rr::rdata::TXT;
        assert!(is_spf(&RData::TXT(TXT::new(vec![
            "v=spf1".into(),
            " -all".into()
        ]))));
        assert!(is_spf(&RData::TXT(TXT::new(vec!["V=SPF1 -all".into()]))));
        assert!(!is_spf(&RData::TXT(TXT::new(vec!["v=spf10".into()]))));
        assert!(is_part_label(b"_1-0a1b2c3d"));
        assert!(!is_part_label(b"_dmarc"));
        assert!(!is_part_label(b"_1-"));
    }
}

//! Negative answers by compact denial of existence (RFC 9824): one NSEC at the query
//! name whose next name is its immediate successor (`\000.<qname>`), so it covers no
//! other name and the zone cannot be walked. A name that does not exist gets NOERROR
//! (not NXDOMAIN) with NXNAME in the bitmap; NODATA at an existing name (an empty
//! non-terminal included) lists the types that are there.

use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC};
use hickory_proto::rr::{Label, Name, RData, Record, RecordType};

use super::TYPE_NXNAME;

/// The NSEC record proving that `qname` has none of the types asked for: `types` are
/// the types present at the name (empty for an empty non-terminal); `exists` false
/// adds NXNAME. `None` when the successor name would be longer than 255 octets.
pub fn compact_nsec(qname: &Name, types: &[RecordType], exists: bool, ttl: u32) -> Option<Record> {
    let zero = Label::from_raw_bytes(&[0]).ok()?;
    let next = qname.prepend_label(zero).ok()?;
    let mut bitmap: Vec<RecordType> = types.to_vec();
    bitmap.extend([RecordType::RRSIG, RecordType::NSEC]);
    if !exists {
        bitmap.push(RecordType::Unknown(TYPE_NXNAME));
    }
    let nsec = NSEC::new(next, bitmap);
    Some(Record::from_rdata(
        qname.clone(),
        ttl,
        RData::DNSSEC(DNSSECRData::NSEC(nsec)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::serialize::binary::BinEncodable;

    #[test]
    fn the_next_name_is_the_immediate_successor_and_nxname_marks_absence() {
        let q = Name::from_ascii("nope.example.test.").unwrap();
        let r = compact_nsec(&q, &[], false, 300).unwrap();
        let RData::DNSSEC(DNSSECRData::NSEC(nsec)) = &r.data else {
            panic!("{r:?}")
        };
        assert_eq!(nsec.next_domain_name().to_bytes().unwrap()[..3], [1, 0, 4]);
        let types: Vec<u16> = nsec.type_bit_maps().map(u16::from).collect();
        assert_eq!(types, vec![46, 47, 128]);

        let ent = compact_nsec(&q, &[RecordType::TXT], true, 300).unwrap();
        let RData::DNSSEC(DNSSECRData::NSEC(nsec)) = &ent.data else {
            panic!()
        };
        let types: Vec<u16> = nsec.type_bit_maps().map(u16::from).collect();
        assert_eq!(types, vec![16, 46, 47]);
    }
}

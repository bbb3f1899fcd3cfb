//! Incremental zone transfer (IXFR, RFC 1995) as a secondary receives it: telling the
//! three answers apart (up to date, the whole zone in AXFR form, or differences),
//! applying differences to the stored copy, and writing the result back in the stored
//! copy's format (AXFR messages). Pure: the network exchange is in `secondary`.

use std::collections::HashMap;

use anyhow::{Result, anyhow, bail, ensure};
use hickory_proto::{
    op::{Message, MessageType, OpCode},
    rr::{DNSClass, Name, RData, Record, RecordType},
    serialize::binary::BinEncodable as _,
};

/// One difference sequence: the records deleted, then those added, moving the zone
/// from serial `from` to serial `to`.
#[derive(Debug, Default)]
pub struct Change {
    pub from: u32,
    pub to: u32,
    pub deleted: Vec<Record>,
    pub added: Vec<Record>,
}

/// What a primary answered to an IXFR request.
#[derive(Debug)]
pub enum Answer {
    /// One SOA no newer than ours: nothing to transfer.
    UpToDate,
    /// The whole zone in AXFR form (the primary has no differences from our serial).
    Whole,
    /// Differences from our serial, in order, ending at `soa`.
    Changes { soa: Box<Record>, changes: Vec<Change> },
}

fn soa_serial(r: &Record, apex: &Name) -> Option<u32> {
    match &r.data {
        RData::SOA(soa) if &r.name == apex => Some(soa.serial),
        _ => None,
    }
}

/// Whether the records received so far (every answer record of every message, in
/// order) make a whole IXFR answer to a request from serial `ours`.
pub fn complete(records: &[Record], apex: &Name, ours: u32) -> Result<bool> {
    let Some(first) = records.first() else { return Ok(false) };
    let newest = soa_serial(first, apex).ok_or_else(|| anyhow!("the IXFR answer does not start with the SOA of {apex}"))?;
    let Some(second) = records.get(1) else {
        // A lone SOA is the whole answer only when it says we are up to date; otherwise
        // more messages follow (or the primary sent nothing else: a timeout says so).
        return Ok(!super::secondary::serial_newer(newest, ours));
    };
    let soas = records.iter().filter(|r| soa_serial(r, apex).is_some()).count();
    if soa_serial(second, apex) != Some(ours) {
        // AXFR form: the opening SOA, the zone, the closing SOA.
        return Ok(soas >= 2);
    }
    // Differences: SOA(newest), then per change SOA(from) deleted… SOA(to) added…,
    // then SOA(newest) again. The last change's own SOA(to) is the odd one before it.
    Ok(soas >= 4 && soas % 2 == 0 && records.last().and_then(|r| soa_serial(r, apex)) == Some(newest))
}

/// Reads a whole IXFR answer (see [`complete`]) into what it says.
pub fn parse(records: Vec<Record>, apex: &Name, ours: u32) -> Result<Answer> {
    ensure!(complete(&records, apex, ours)?, "the IXFR answer is cut short");
    if records.len() == 1 {
        return Ok(Answer::UpToDate);
    }
    if soa_serial(&records[1], apex) != Some(ours) {
        return Ok(Answer::Whole);
    }
    let last = records.len() - 1;
    let mut records = records.into_iter();
    let soa = records.next().expect("checked above");
    let newest = soa_serial(&soa, apex).expect("checked above");
    let mut changes: Vec<Change> = Vec::new();
    // Within the open change: false while reading its deletions, true its additions.
    let mut adding = true;
    for r in records.take(last - 1) {
        match (soa_serial(&r, apex), adding) {
            (Some(serial), true) => {
                let from = changes.last().map(|c| c.to).unwrap_or(ours);
                ensure!(serial == from, "an IXFR change starts at serial {serial}, not at {from} where the previous one ended");
                changes.push(Change { from: serial, to: serial, ..Change::default() });
                adding = false;
            }
            (Some(serial), false) => {
                changes.last_mut().expect("a change is open").to = serial;
                adding = true;
            }
            (None, false) => changes.last_mut().expect("a change is open").deleted.push(r),
            (None, true) => changes.last_mut().ok_or_else(|| anyhow!("an IXFR record comes before any change"))?.added.push(r),
        }
    }
    ensure!(adding, "the last IXFR change has no closing SOA");
    let end = changes.last().map(|c| c.to);
    ensure!(end == Some(newest), "the IXFR changes end at serial {end:?}, not at the newest {newest}");
    Ok(Answer::Changes { soa: Box::new(soa), changes })
}

/// A record's identity in a zone: owner (case-folded), type, class and data; the TTL
/// is not part of it (RFC 2181 5.2).
fn identity(r: &Record) -> Result<(Name, RecordType, DNSClass, Vec<u8>)> {
    let data = r.data.to_bytes().map_err(|e| anyhow!("record {} {}: {e}", r.name, r.record_type()))?;
    Ok((r.name.to_lowercase(), r.record_type(), r.dns_class, data))
}

/// The stored zone (its SOA first, without the closing SOA) with `changes` applied
/// and `soa` as its new SOA. A deletion of a record the zone does not hold means the
/// copies have diverged: an error, so that the caller falls back to AXFR.
pub fn apply(stored: Vec<Record>, soa: Record, changes: &[Change]) -> Result<Vec<Record>> {
    let mut slots: Vec<Option<Record>> = Vec::with_capacity(stored.len());
    let mut at: HashMap<_, usize> = HashMap::with_capacity(stored.len());
    for r in stored.into_iter().skip(1) {
        if let std::collections::hash_map::Entry::Vacant(e) = at.entry(identity(&r)?) {
            e.insert(slots.len());
            slots.push(Some(r));
        }
    }
    for c in changes {
        for r in &c.deleted {
            let Some(i) = at.remove(&identity(r)?) else {
                bail!("IXFR {} -> {} deletes {} {} that the stored copy does not hold", c.from, c.to, r.name, r.record_type());
            };
            slots[i] = None;
        }
        for r in &c.added {
            if let std::collections::hash_map::Entry::Vacant(e) = at.entry(identity(r)?) {
                e.insert(slots.len());
                slots.push(Some(r.clone()));
            }
        }
    }
    Ok(std::iter::once(soa).chain(slots.into_iter().flatten()).collect())
}

/// Largest message written: under 64 KiB with room for the header.
const MESSAGE_BUDGET: usize = 60_000;

/// `zone` (its SOA first) as AXFR messages: SOA, the records, SOA again, in messages
/// of at most [`MESSAGE_BUDGET`] bytes (each record's uncompressed size counted).
pub fn to_messages(zone: &[Record]) -> Result<Vec<Vec<u8>>> {
    let soa = zone.first().ok_or_else(|| anyhow!("a zone without records"))?;
    let mut out = Vec::new();
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    let mut size = 12;
    for r in zone.iter().chain(std::iter::once(soa)) {
        let len = r.to_bytes().map_err(|e| anyhow!("record {} {}: {e}", r.name, r.record_type()))?.len();
        if size + len > MESSAGE_BUDGET && !m.answers.is_empty() {
            out.push(std::mem::replace(&mut m, Message::new(0, MessageType::Response, OpCode::Query)).to_vec()?);
            size = 12;
        }
        m.add_answer(r.clone());
        size += len;
    }
    out.push(m.to_vec()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use hickory_proto::rr::rdata::{A, SOA};

    use super::*;

    fn apex() -> Name {
        Name::from_ascii("example.net.").unwrap()
    }

    fn soa(serial: u32) -> Record {
        let mname = Name::from_ascii("ns1.example.net.").unwrap();
        Record::from_rdata(apex(), 300, RData::SOA(SOA::new(mname.clone(), mname, serial, 60, 1, 8, 300)))
    }

    fn a(name: &str, addr: &str) -> Record {
        Record::from_rdata(Name::from_ascii(name).unwrap(), 300, RData::A(A::from_str(addr).unwrap()))
    }

    fn names(zone: &[Record]) -> Vec<String> {
        zone.iter().map(|r| format!("{} {}", r.name, r.data)).collect()
    }

    #[test]
    fn the_three_answers_are_told_apart_and_complete_only_when_whole() {
        let ap = apex();
        // Up to date: a lone SOA no newer than ours.
        assert!(complete(&[soa(5)], &ap, 5).unwrap());
        assert!(matches!(parse(vec![soa(5)], &ap, 5).unwrap(), Answer::UpToDate));
        // A lone newer SOA is only the start of a longer answer.
        assert!(!complete(&[soa(6)], &ap, 5).unwrap());
        // AXFR form: whole at its second SOA.
        let whole = vec![soa(6), a("www.example.net.", "192.0.2.1"), soa(6)];
        assert!(!complete(&whole[..2], &ap, 5).unwrap());
        assert!(matches!(parse(whole, &ap, 5).unwrap(), Answer::Whole));
        // Differences 5 -> 6 -> 7: the last change's SOA(7) is not yet the end.
        let diffs = vec![
            soa(7),
            soa(5),
            a("old.example.net.", "192.0.2.1"),
            soa(6),
            a("new.example.net.", "192.0.2.2"),
            soa(6),
            soa(7),
            a("newer.example.net.", "192.0.2.3"),
            soa(7),
        ];
        for cut in 1..diffs.len() {
            assert!(!complete(&diffs[..cut], &ap, 5).unwrap(), "complete after {cut} records");
        }
        let Answer::Changes { soa: newest, changes } = parse(diffs, &ap, 5).unwrap() else { panic!("not read as changes") };
        assert_eq!(serial_of(&newest), 7);
        assert_eq!(changes.iter().map(|c| (c.from, c.to, c.deleted.len(), c.added.len())).collect::<Vec<_>>(), [(5, 6, 1, 1), (6, 7, 0, 1)]);
        assert!(complete(&[a("www.example.net.", "192.0.2.1")], &ap, 5).is_err(), "an answer must open with the SOA");
        // A chain with a gap (5 -> 6, then 8 -> 9) is refused.
        let gap = vec![soa(9), soa(5), soa(6), soa(8), soa(9), soa(9)];
        assert!(parse(gap, &ap, 5).unwrap_err().to_string().contains("starts at serial 8"));
    }

    fn serial_of(r: &Record) -> u32 {
        soa_serial(r, &apex()).unwrap()
    }

    #[test]
    fn changes_apply_in_order_ignoring_ttl_and_case_and_a_missing_deletion_is_refused() {
        let stored = vec![soa(5), a("www.example.net.", "192.0.2.80"), a("keep.example.net.", "192.0.2.9")];
        let mut upper = a("WWW.Example.NET.", "192.0.2.80");
        upper.ttl = 60;
        let changes = [
            Change { from: 5, to: 6, deleted: vec![upper], added: vec![a("www.example.net.", "192.0.2.81"), a("keep.example.net.", "192.0.2.9")] },
            Change { from: 6, to: 7, deleted: vec![], added: vec![a("n1.example.net.", "198.51.100.1")] },
        ];
        let zone = apply(stored.clone(), soa(7), &changes).unwrap();
        assert_eq!(
            names(&zone),
            names(&[soa(7), a("keep.example.net.", "192.0.2.9"), a("www.example.net.", "192.0.2.81"), a("n1.example.net.", "198.51.100.1")]),
            "the SOA replaced, the deletion applied case- and TTL-blind, a duplicate addition kept once"
        );
        let diverged = [Change { from: 5, to: 6, deleted: vec![a("gone.example.net.", "192.0.2.1")], added: vec![] }];
        let e = apply(stored, soa(6), &diverged).unwrap_err().to_string();
        assert!(e.contains("gone.example.net.") && e.contains("does not hold"), "{e}");
    }

    #[test]
    fn a_large_zone_is_written_as_messages_under_64k_that_read_back_whole() {
        let mut zone = vec![soa(7)];
        zone.extend((0..5000).map(|i| a(&format!("host-{i}.example.net."), &format!("198.51.{}.{}", i / 256 % 256, i % 256))));
        let messages = to_messages(&zone).unwrap();
        assert!(messages.len() > 1, "5000 records fit one message?");
        let mut read = Vec::new();
        for m in &messages {
            assert!(m.len() <= u16::MAX as usize, "a message of {} bytes", m.len());
            read.extend(Message::from_vec(m).unwrap().answers);
        }
        assert_eq!(read.len(), zone.len() + 1, "every record and the closing SOA");
        assert_eq!(names(&read[..zone.len()]), names(&zone));
        assert_eq!(serial_of(read.last().unwrap()), 7);
    }
}

//! Catalog zones (RFC 9432), as a consumer: a `[[dns.secondary]]` with `catalog = true`
//! is transferred and followed like any secondary zone but not served; the member
//! zones it lists become secondary zones of the same block, from the catalog's
//! primaries with its TSIG key. A zone added to the catalog at the primary reaches
//! every PoP with no config edit; one removed stops being served.
//!
//! The config file names the catalog; [`expand`] adds its members, from the catalog's
//! stored copy, to the config that start-up and every reload apply. A change to the
//! catalog arrives as any secondary change does (NOTIFY, IXFR) and triggers a reload,
//! which expands again.

use anyhow::{Result, anyhow, ensure};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::config::{Config, Secondary};

/// Members taken from one catalog, at most: past this a primary's catalog is more
/// likely a mistake (or an attack) than a plan, and the rest are left out, logged.
pub const MAX_MEMBERS: usize = 10_000;

/// The member zones a catalog's records list (lowercase, final dot), in order: the
/// PTR targets at `<unique-id>.zones.<catalog>`. The catalog must say `version` "2".
pub fn members(catalog: &Name, records: &[hickory_proto::rr::Record]) -> Result<Vec<String>> {
    let version = catalog.prepend_label("version").map_err(|e| anyhow!("{e}"))?;
    let zones = catalog.prepend_label("zones").map_err(|e| anyhow!("{e}"))?;
    let versions: Vec<String> = records
        .iter()
        .filter(|r| r.name == version && r.record_type() == RecordType::TXT)
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect::<String>()),
            _ => None,
        })
        .collect();
    ensure!(versions == ["2"], "catalog {catalog}: version.{catalog} TXT says {versions:?}, and only schema version \"2\" (RFC 9432) is read");
    let mut out: Vec<String> = Vec::new();
    for r in records {
        // Members only: <unique-id>.zones.<catalog> PTR; properties live one level down.
        if r.record_type() != RecordType::PTR || r.name.num_labels() != zones.num_labels() + 1 || !zones.zone_of(&r.name) {
            continue;
        }
        let RData::PTR(target) = &r.data else { continue };
        let zone = target.0.to_lowercase().to_string();
        let zone = if zone.ends_with('.') { zone } else { zone + "." };
        if zone != "." && !out.contains(&zone) {
            out.push(zone);
        }
    }
    Ok(out)
}

/// Adds the members of every catalog in `config` with a stored copy to its block's
/// secondaries. A member that is already a zone of the config (a file zone or a
/// configured secondary) keeps its configured form; a catalog that cannot be read
/// adds nothing. What was left out and why, for the log.
pub fn expand(config: &mut Config) -> Vec<String> {
    let mut notes = Vec::new();
    let state_dir = config.pop.state_dir.clone();
    for block in &mut config.dns {
        let catalogs: Vec<Secondary> = block.secondaries.iter().filter(|s| s.catalog).cloned().collect();
        for cat in catalogs {
            let file = cat.file(&state_dir);
            if !file.exists() {
                continue; // not transferred yet: its task will, and reload
            }
            let read = super::secondary::read_stored(&file, block.zone_limits.max_bytes).and_then(|(apex, records, _)| members(&apex, &records));
            let listed = match read {
                Ok(m) => m,
                Err(e) => {
                    notes.push(format!("catalog {}: {e:#}; its members are not served", cat.zone));
                    continue;
                }
            };
            if listed.len() > MAX_MEMBERS {
                notes.push(format!("catalog {}: lists {} zones, only the first {MAX_MEMBERS} are served", cat.zone, listed.len()));
            }
            for zone in listed.into_iter().take(MAX_MEMBERS) {
                let taken = block.secondaries.iter().find(|s| s.zone == zone).map(|s| s.member_of.clone().unwrap_or_else(|| "the config".into()));
                if let Some(by) = taken {
                    notes.push(format!("catalog {}: member {zone} is already a zone of {by}; that one is kept", cat.zone));
                    continue;
                }
                block.secondaries.push(Secondary {
                    zone,
                    primaries: cat.primaries.clone(),
                    tsig: cat.tsig.clone(),
                    catalog: false,
                    member_of: Some(cat.zone.clone()),
                    line: cat.line,
                });
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use hickory_proto::rr::{
        Record,
        rdata::{PTR, TXT},
    };

    use super::*;

    fn ptr(owner: &str, target: &str) -> Record {
        Record::from_rdata(Name::from_str(owner).unwrap(), 0, RData::PTR(PTR(Name::from_str(target).unwrap())))
    }

    #[test]
    fn members_are_the_ptrs_one_label_below_zones_of_a_version_2_catalog() {
        let cat = Name::from_str("catalog.example.").unwrap();
        let version = Record::from_rdata(Name::from_str("version.catalog.example.").unwrap(), 0, RData::TXT(TXT::new(vec!["2".into()])));
        let records = vec![
            version.clone(),
            ptr("a1.zones.catalog.example.", "Example.NET."),
            ptr("b2.zones.catalog.example.", "example.org."),
            // A property of a member (one level further down), not a member.
            ptr("ext.a1.zones.catalog.example.", "other.example."),
            // Outside zones.: not a member.
            ptr("x.catalog.example.", "stray.example."),
            // The same zone twice is one member.
            ptr("c3.zones.catalog.example.", "example.org."),
        ];
        assert_eq!(members(&cat, &records).unwrap(), ["example.net.", "example.org."]);
        let v1 = Record::from_rdata(Name::from_str("version.catalog.example.").unwrap(), 0, RData::TXT(TXT::new(vec!["1".into()])));
        let e = members(&cat, &[v1, ptr("a1.zones.catalog.example.", "example.net.")]).unwrap_err().to_string();
        assert!(e.contains("only schema version \"2\""), "{e}");
        assert!(members(&cat, &records[1..]).is_err(), "no version record");
    }
}

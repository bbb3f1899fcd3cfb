//! Config validation as an operator meets it: the messages, lines and defaults.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(Path::new("pop.toml"), text)
}

fn errors(text: &str) -> Vec<String> {
    parse(text).unwrap_err().0.iter().map(|e| e.to_string()).collect()
}

#[test]
fn pass_unhandled_vips_must_name_configured_vips() {
    let base = "[[interface]]\nname = \"eth0\"\n[[service]]\nname = \"web\"\nvips = [\"203.0.113.10\"]\nport = 80\n[[service.backends]]\naddress = \"198.51.100.5\"\n";
    let c = parse(&format!("[pop]\npass_unhandled_vips = [\"203.0.113.10\"]\n{base}")).unwrap();
    assert_eq!(c.pop.pass_unhandled_vips, vec!["203.0.113.10".parse::<IpAddr>().unwrap()]);
    assert!(parse(base).unwrap().pop.pass_unhandled_vips.is_empty());
    // Written IPv4-mapped, it is the same VIP (as in vips = [...]).
    let c = parse(&format!("[pop]\npass_unhandled_vips = [\"::ffff:203.0.113.10\"]\n{base}")).unwrap();
    assert_eq!(c.pop.pass_unhandled_vips, vec!["203.0.113.10".parse::<IpAddr>().unwrap()]);
    let e = errors(&format!("[pop]\npass_unhandled_vips = [\"203.0.113.11\", \"x\"]\n{base}"));
    assert!(e[0].starts_with("pop.toml:2: pop.pass_unhandled_vips: 203.0.113.11 is not a VIP"), "{e:?}");
    assert!(e[1].starts_with("pop.toml:2: pop.pass_unhandled_vips: \"x\" is not an IPv4"), "{e:?}");
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse("[[interface]]\nname = \"eth0\"\n").unwrap();
    assert_eq!(c.interfaces.len(), 1);
    assert_eq!(c.interfaces[0].name, "eth0");
    assert_eq!(c.interfaces[0].xdp_mode, XdpMode::Native);
    assert_eq!(c.interfaces[0].line, 2);
    assert_eq!(c.pop.bpffs_dir, PathBuf::from(DEFAULT_BPFFS_DIR));
    assert_eq!(c.pop.run_dir, PathBuf::from(DEFAULT_RUN_DIR));
    assert_eq!(c.pop.bpf_log, BpfLogLevel::Info);
}

#[test]
fn full_config() {
    let c = parse(
        "[pop]\nname = \"pop-a\"\nbpffs_dir = \"/sys/fs/bpf/x\"\nrun_dir = \"/tmp/r\"\nbpf_log = \"debug\"\n\
         [[interface]]\nname = \"veth0\"\nxdp_mode = \"generic\"\n[[interface]]\nname = \"veth1\"\n",
    )
    .unwrap();
    assert_eq!(c.pop.name, "pop-a");
    assert_eq!(c.pop.bpffs_dir, PathBuf::from("/sys/fs/bpf/x"));
    assert_eq!(c.pop.bpf_log, BpfLogLevel::Debug);
    assert_eq!(c.interfaces[0].xdp_mode, XdpMode::Generic);
    assert_eq!(c.interfaces[1].name, "veth1");
    assert_eq!(c.interfaces[1].line, 10);
}

#[test]
fn unknown_key_is_an_error_with_its_line() {
    assert_eq!(
        errors("[[interface]]\nname = \"eth0\"\nxdp_mod = \"native\"\n"),
        ["pop.toml:3: unknown field `xdp_mod`, expected `name` or `xdp_mode`"]
    );
    let e = errors("[pop]\nnmae = \"x\"\n[[interface]]\nname = \"eth0\"\n");
    assert!(e[0].starts_with("pop.toml:2: unknown field `nmae`"), "{e:?}");
    let e = errors("[[interface]]\nname = \"eth0\"\n[extra]\n");
    assert!(e[0].starts_with("pop.toml:3: unknown field `extra`"), "{e:?}");
}

#[test]
fn bad_values_name_their_line() {
    let e = errors("[[interface]]\nname = \"eth0\"\nxdp_mode = \"turbo\"\n");
    assert!(e[0].starts_with("pop.toml:3: unknown variant `turbo`"), "{e:?}");
    let e = errors("[pop]\nbpf_log = 3\n[[interface]]\nname = \"eth0\"\n");
    assert!(e[0].starts_with("pop.toml:2:"), "{e:?}");
    let e = errors("[[interface]]\nname = \"eth0\n");
    assert!(e[0].starts_with("pop.toml:2:"), "{e:?}");
}

#[test]
fn semantic_errors_are_all_reported() {
    let e = errors(
        "[pop]\nname = \"bad name\"\nbpffs_dir = \"relative/dir\"\n\
         [[interface]]\nname = \"eth0\"\n[[interface]]\nname = \"eth0\"\n[[interface]]\nname = \"a-name-longer-than-15\"\n",
    );
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(e[0].starts_with("pop.toml:2: pop.name \"bad name\""), "{e:?}");
    assert!(e[1].starts_with("pop.toml:3: pop.bpffs_dir \"relative/dir\" must be an absolute path"), "{e:?}");
    assert!(e[2].starts_with("pop.toml:6: interface \"eth0\" is listed twice"), "{e:?}");
    assert!(e[3].starts_with("pop.toml:9: interface name \"a-name-longer-than-15\""), "{e:?}");
}

#[test]
fn dns_blocks() {
    let c = Config::parse(
        Path::new("/etc/pop/pop.toml"),
        "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\", \"2001:db8::53\"]\nzones = [\"zones/a.zone\", \"/abs/b.zone\"]\n\
         [[dns]]\nvips = [\"203.0.113.54\"]\nzones = [\"c.zone\"]\nrate_limit = 0\nfast_path = false\n",
    )
    .unwrap();
    assert_eq!(c.dns.len(), 2);
    assert_eq!(c.dns[0].vips, ["203.0.113.53".parse::<IpAddr>().unwrap(), "2001:db8::53".parse().unwrap()]);
    assert_eq!(c.dns[0].zones, [PathBuf::from("/etc/pop/zones/a.zone"), PathBuf::from("/abs/b.zone")]);
    assert_eq!((c.dns[0].rate_limit, c.dns[0].fast_path, c.dns[0].line), (200, true, 3));
    assert_eq!((c.dns[1].rate_limit, c.dns[1].fast_path), (0, false));
}

#[test]
fn table_sizes_have_defaults_and_bounds() {
    let c = parse("[[interface]]\nname = \"eth0\"\n").unwrap();
    assert_eq!((c.pop.dns_table_size, c.pop.flow_table_size), (pop_common::DNS_TABLE_MAX, pop_common::LB_FLOWS_MAX));
    let c = parse("[pop]\ndns_table_size = 4194304\n[[interface]]\nname = \"eth0\"\n").unwrap();
    assert_eq!(c.pop.dns_table_size, 4194304);
    let e = errors("[pop]\nflow_table_size = 999999999\ndns_table_size = 10\n[[interface]]\nname = \"eth0\"\n");
    assert!(e[1].starts_with("pop.toml:3: pop.dns_table_size 10 must be between 1024 and 67108864"), "{e:?}");
    assert!(e[0].starts_with("pop.toml:2: pop.flow_table_size 999999999 must be"), "{e:?}");
}

#[test]
fn dns_block_errors() {
    let e = errors(
        "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\", \"not-an-ip\"]\nzones = [\"a.zone\"]\n\
         [[dns]]\nvips = [\"203.0.113.53\"]\nzones = []\n[[dns]]\nvips = [\"::1\"]\nzone = [\"x\"]\n",
    );
    assert!(e[0].starts_with("pop.toml:11: unknown field `zone`"), "{e:?}");
    let e = errors(
        "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\", \"not-an-ip\"]\nzones = [\"a.zone\"]\n\
         [[dns]]\nvips = [\"203.0.113.53\"]\nzones = []\n",
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("pop.toml:4: \"not-an-ip\" is not an IPv4 or IPv6 address"), "{e:?}");
    assert!(e[1].starts_with("pop.toml:6: [[dns]] needs at least one zone: a file in zones, or a [[dns.secondary]]"), "{e:?}");
    assert_eq!(e[2], "pop.toml:7: 203.0.113.53 port 53/udp for [[dns]] is already served by [[dns]] at pop.toml:4");
}

#[test]
fn secondary_zones() {
    let ok = "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\"]\n\
              [[dns.secondary]]\nzone = \"Example.NET\"\nprimaries = [\"192.0.2.1\", \"[2001:db8::1]:5353\"]\n";
    let dir = std::env::temp_dir().join(format!("pop-secondary-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pop.toml"), ok).unwrap();
    let c = Config::load(&dir.join("pop.toml")).unwrap();
    let s = &c.dns[0].secondaries[0];
    assert_eq!(s.zone, "example.net.");
    assert_eq!(s.primaries, ["192.0.2.1:53".parse().unwrap(), "[2001:db8::1]:5353".parse().unwrap()]);
    assert_eq!(s.file(&c.pop.state_dir), std::path::Path::new("/var/lib/pop/secondary/example.net.axfr"));
    let e = errors(
        "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\"]\n\
         [[dns.secondary]]\nzone = \"example.net\"\nprimaries = [\"primary.example\"]\n\
         [[dns.secondary]]\nzone = \"example.net.\"\nprimaries = []\n",
    );
    assert!(e.iter().any(|e| e.starts_with("pop.toml:7: dns.secondary example.net.: primary \"primary.example\" is not an address")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("pop.toml:9: dns.secondary zone example.net. is listed twice")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("pop.toml:10: dns.secondary example.net.: primaries needs at least one address")), "{e:?}");
    let e = errors(
        "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\"]\n\
         [[dns.secondary]]\nzone = \"a.example\"\nprimaries = [\"192.0.2.1\"]\ntsig = { name = \"k\", algorithm = \"hmac-md5\", secret = \"c2hvcnQ=\" }\n\
         [[dns.secondary]]\nzone = \"b.example\"\nprimaries = [\"192.0.2.1\"]\ntsig = { name = \"k\", secret = \"not base64!\" }\n",
    );
    assert!(e.iter().any(|e| e.starts_with("pop.toml:8: dns.secondary a.example.: tsig algorithm \"hmac-md5\": only hmac-sha256")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("pop.toml:8: dns.secondary a.example.: tsig secret is shorter than 16 bytes")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("pop.toml:12: dns.secondary b.example.: tsig secret is not base64")), "{e:?}");
}

#[test]
fn services() {
    let c = parse(
        "[[interface]]\nname = \"eth0\"\n[[service]]\nname = \"web\"\nvips = [\"203.0.113.10\", \"2001:db8::10\"]\nport = 80\n\
         [[service.backends]]\naddress = \"198.51.100.11\"\nweight = 2\n[[service.backends]]\naddress = \"2001:db8:1::11\"\n\
         [[service]]\nname = \"dns-lb\"\nvips = [\"203.0.113.11\"]\nport = 53\nprotocol = \"udp\"\ntable_size = 251\n\
         backends = [{ address = \"198.51.100.12\" }]\n",
    )
    .unwrap();
    assert_eq!(c.services.len(), 2);
    let web = &c.services[0];
    assert_eq!((web.name.as_str(), web.port, web.protocol, web.table_size, web.min_healthy, web.line), ("web", 80, Protocol::Tcp, 65537, 1, 3));
    assert_eq!(
        web.backends,
        [Backend { address: "198.51.100.11".parse().unwrap(), weight: 2 }, Backend { address: "2001:db8:1::11".parse().unwrap(), weight: 1 }]
    );
    assert_eq!((c.services[1].protocol, c.services[1].table_size), (Protocol::Udp, 251));
}

#[test]
fn service_errors() {
    let e = errors(
        "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\"]\nzones = [\"z\"]\n\
         [[service]]\nname = \"web\"\nvips = [\"203.0.113.10\"]\nport = 70000\nbackends = [{ address = \"2001:db8::1\" }]\n\
         [[service]]\nname = \"web\"\nvips = [\"203.0.113.53\"]\nport = 53\nprotocol = \"udp\"\ntable_size = 100\nbackends = [{ address = \"198.51.100.1\", weight = 5000 }]\n",
    );
    let want = [
        "pop.toml:9: service \"web\": port 70000 is not 1-65535",
        "pop.toml:6: service \"web\" has IPv4 VIPs but no IPv4 backend",
        "pop.toml:12: service \"web\" is defined twice",
        "pop.toml:13: 203.0.113.53 port 53/udp for service \"web\" is already served by [[dns]] at pop.toml:4",
        "pop.toml:17: weight 5000 is above 1000",
        "pop.toml:16: table_size 100 must be a prime",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got:?} does not start with {want:?}");
    }
}

const IFACE: &str = "[[interface]]\nname = \"eth0\"\n";

#[test]
fn ipv4_mapped_vips_are_the_ipv4_vip() {
    let c = parse(&format!(
        "{IFACE}[[dns]]\nvips = [\"::ffff:203.0.113.53\"]\nzones = [\"z\"]\n\
         [[service]]\nname = \"web\"\nvips = [\"::ffff:203.0.113.10\"]\nport = 80\nbackends = [{{ address = \"::ffff:198.51.100.1\" }}]\n"
    ))
    .unwrap();
    let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(c.dns[0].vips, [v4("203.0.113.53")]);
    assert_eq!(c.services[0].vips, [v4("203.0.113.10")]);
    assert_eq!(c.services[0].backends[0].address, v4("198.51.100.1"));
    // Written both ways, it is one VIP with two handlers.
    let e = errors(&format!(
        "{IFACE}[[dns]]\nvips = [\"203.0.113.53\"]\nzones = [\"z\"]\n\
         [[dns]]\nvips = [\"::ffff:203.0.113.53\"]\nzones = [\"y\"]\n"
    ));
    assert_eq!(e, ["pop.toml:7: 203.0.113.53 port 53/udp for [[dns]] is already served by [[dns]] at pop.toml:4"]);
}

#[test]
fn one_handler_per_vip_port_and_protocol() {
    // DNS holds UDP and TCP 53 (its server answers TCP): a TCP/53 service clashes too.
    let e = errors(&format!(
        "{IFACE}[[dns]]\nvips = [\"203.0.113.53\"]\nzones = [\"z\"]\n\
         [[service]]\nname = \"dnstcp\"\nvips = [\"203.0.113.53\"]\nport = 53\nbackends = [{{ address = \"198.51.100.1\" }}]\n"
    ));
    assert_eq!(e, ["pop.toml:8: 203.0.113.53 port 53/tcp for service \"dnstcp\" is already served by [[dns]] at pop.toml:4"]);
    // HTTP in XDP and a service on the same TCP port.
    let e = errors(&format!(
        "{IFACE}[[service]]\nname = \"web\"\nvips = [\"203.0.113.80\"]\nport = 80\nbackends = [{{ address = \"198.51.100.1\" }}]\n\
         [[http]]\nname = \"edge\"\nvips = [\"2001:db8::80\", \"203.0.113.80\"]\n"
    ));
    assert_eq!(e, ["pop.toml:10: 203.0.113.80 port 80/tcp for http site \"edge\" is already served by service \"web\" at pop.toml:5"]);
    // Different protocol or port: no clash.
    parse(&format!(
        "{IFACE}[[service]]\nname = \"web\"\nvips = [\"203.0.113.80\"]\nport = 80\nprotocol = \"udp\"\nbackends = [{{ address = \"198.51.100.1\" }}]\n\
         [[http]]\nname = \"edge\"\nvips = [\"203.0.113.80\"]\n[[http]]\nname = \"alt\"\nvips = [\"203.0.113.80\"]\nport = 8080\n"
    ))
    .unwrap();
}

#[test]
fn port_zero_is_rejected() {
    let e = errors(&format!(
        "{IFACE}[[service]]\nname = \"web\"\nvips = [\"203.0.113.80\"]\nport = 0\nbackends = [{{ address = \"198.51.100.1\" }}]\n\
         [service.health]\ntype = \"tcp\"\nport = 0\n[[http]]\nname = \"edge\"\nvips = [\"203.0.113.81\"]\nport = 0\n"
    ));
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!(e[0], "pop.toml:6: service \"web\": port 0 is not 1-65535");
    assert!(e[1].starts_with("pop.toml:8: service \"web\": health port 0"), "{e:#?}");
    assert_eq!(e[2], "pop.toml:14: http site \"edge\": port 0 is not 1-65535");
}

#[test]
fn a_maglev_table_too_small_for_the_weights_is_a_config_error() {
    let svc = |table: u32| {
        format!(
            "{IFACE}[[service]]\nname = \"web\"\nvips = [\"203.0.113.80\"]\nport = 80\ntable_size = {table}\n\
             backends = [{{ address = \"198.51.100.1\", weight = 1000 }}, {{ address = \"198.51.100.2\", weight = 1 }}]\n"
        )
    };
    let e = errors(&svc(251));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("pop.toml:7: service \"web\": the IPv4 Maglev table of 251 slots cannot hold these weights"), "{e:#?}");
    parse(&svc(65537)).unwrap();
}

#[test]
fn data_path_table_sizes_are_checked_up_front() {
    // Each DNS VIP takes two VIP table entries (UDP and TCP 53).
    let n = pop_common::MAX_VIPS as usize / 2 + 1;
    let vips: Vec<String> = (0..n).map(|i| format!("\"2001:db8::{:x}\"", i + 1)).collect();
    let e = errors(&format!("{IFACE}[[dns]]\nvips = [{}]\nzones = [\"z\"]\n", vips.join(", ")));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with(&format!("pop.toml: {} (VIP, port, protocol) entries in all", 2 * n)), "{e:#?}");
    // Routes, plus a default and a 400 per site, fill HTTP_ROUTES.
    let routes: String = (0..pop_common::HTTP_ROUTES_MAX - 1).map(|i| format!("[[http.routes]]\npath = \"/r{i}\"\nstatus = 200\n")).collect();
    let e = errors(&format!("{IFACE}[[http]]\nname = \"edge\"\nvips = [\"203.0.113.80\"]\n{routes}"));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("pop.toml:3: http site \"edge\": more than 4096 routes"), "{e:#?}");
}

#[test]
fn no_interface_is_an_error() {
    let e = errors("[pop]\nname = \"a\"\n");
    assert_eq!(e, ["pop.toml: no [[interface]] configured: name at least one interface to attach to"]);
}

#[test]
fn aya_levels_match_aya_log_common() {
    assert_eq!(BpfLogLevel::Off.aya_level(), 0);
    assert_eq!(BpfLogLevel::Debug.aya_level(), 4);
}

#[test]
fn anycast_lease_has_a_default_a_bound_and_an_off_switch() {
    let base = "[[interface]]\nname = \"eth0\"\n[anycast]\n";
    let a = parse(base).unwrap().anycast.unwrap();
    assert_eq!(a.lease_s, DEFAULT_LEASE_S);
    assert_eq!(a.renew_every(), Some(std::time::Duration::from_millis(666)));
    let a = parse(&format!("{base}lease_s = 30\n")).unwrap().anycast.unwrap();
    assert_eq!(a.renew_every(), Some(std::time::Duration::from_secs(10)));
    let a = parse(&format!("{base}lease_s = 0\n")).unwrap().anycast.unwrap();
    assert_eq!(a.renew_every(), None, "0: addresses never lapse");
    let e = errors(&format!("{base}check_ms = 100\nlease_s = 3601\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    // Errors found in the section name its header line, as for the other [anycast] keys.
    assert!(e[0].starts_with("pop.toml:3: anycast.lease_s must be at most 3600"), "{e:?}");
    let e = errors(&format!("{base}lease_s = -1\n"));
    assert!(e[0].starts_with("pop.toml:4:"), "{e:?}");
}

#[test]
fn flow_table_rate_has_a_default_and_a_range() {
    let c = parse("[[interface]]\nname = \"eth0\"\n").unwrap();
    assert_eq!(c.pop.flow_table_rate, pop_common::FLOW_TABLE_RATE);
    let c = parse("[pop]\nflow_table_rate = 500\n[[interface]]\nname = \"eth0\"\n").unwrap();
    assert_eq!(c.pop.flow_table_rate, 500);
    for bad in ["0", "100000001"] {
        let e = errors(&format!("[pop]\nflow_table_rate = {bad}\n[[interface]]\nname = \"eth0\"\n"));
        assert!(e[0].starts_with(&format!("pop.toml:2: pop.flow_table_rate = {bad}: use 1 to")), "{e:?}");
    }
}

#[test]
fn client_rtt_sample_is_a_power_of_two_with_a_default() {
    let c = parse("[[interface]]\nname = \"eth0\"\n").unwrap();
    assert_eq!(c.pop.client_rtt_sample, pop_common::RTT_SAMPLE);
    let c = parse("[pop]\nclient_rtt_sample = 1\n[[interface]]\nname = \"eth0\"\n").unwrap();
    assert_eq!(c.pop.client_rtt_sample, 1, "1: every connection");
    for bad in ["3", "0", "2048"] {
        let e = errors(&format!("[pop]\nclient_rtt_sample = {bad}\n[[interface]]\nname = \"eth0\"\n"));
        assert!(e[0].starts_with(&format!("pop.toml:2: pop.client_rtt_sample = {bad}: use a power of two")), "{e:?}");
    }
}

/// Config imports no feature module: only `addr` and the pure helpers the README
/// names, which import nothing from the crate, so no module depends on config and
/// config on it in turn (the cycles config.rs <-> health.rs <-> http.rs once had).
#[test]
fn config_imports_only_leaf_helpers() {
    let sources = [
        ("anycast.rs", include_str!("anycast.rs")),
        ("dns.rs", include_str!("dns.rs")),
        ("error.rs", include_str!("error.rs")),
        ("http.rs", include_str!("http.rs")),
        ("mod.rs", include_str!("mod.rs")),
        ("monitor.rs", include_str!("monitor.rs")),
        ("pop.rs", include_str!("pop.rs")),
        ("service.rs", include_str!("service.rs")),
        ("validator.rs", include_str!("validator.rs")),
    ];
    let allowed = ["crate::config", "crate::addr", "crate::lb::maglev", "crate::http::reply", "crate::{addr, lb::maglev}"];
    for (file, text) in sources {
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at..];
                assert!(allowed.iter().any(|a| rest.starts_with(a)), "config/{file}:{}: imports {rest}", i + 1);
            }
        }
    }
    for (file, text) in [
        ("addr.rs", include_str!("../addr.rs")),
        ("lb/maglev.rs", include_str!("../lb/maglev.rs")),
        ("http/reply.rs", include_str!("../http/reply.rs")),
    ] {
        // Its own unit tests (`use super::*`) aside.
        let code = text.split("#[cfg(test)]").next().unwrap();
        let code = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        assert!(!code.contains("crate::") && !code.contains("super::"), "{file} must import nothing from the crate: config depends on it");
    }
}

//! HTTP answered in XDP: real clients (curl, wget, Python's http.client, wrk) against a
//! VIP whose port 80 only the XDP program answers — nothing listens there in the kernel.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::Result;
use pop_lab::{Host, Lab};

const VIP4: &str = "203.0.113.80";
const VIP6: &str = "2001:db8:80::80";

struct HttpLab {
    lab: Lab,
    client: Host,
    pop: Host,
    config: PathBuf,
}

fn http_lab() -> Result<HttpLab> {
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    lab.route(&client, &format!("{VIP4}/32 via 192.0.2.2"))?;
    lab.route(&client, &format!("{VIP6}/128 via 2001:db8::2"))?;
    lab.addr(&pop, "lo", &format!("{VIP4}/32"))?;
    lab.addr(&pop, "lo", &format!("{VIP6}/128"))?;
    let config = lab.pop_config_with(
        &pop,
        "metrics_listen = \"127.0.0.1:9188\"\nclient_rtt_sample = 1",
        &format!(
            "[[interface]]\nname = \"p0\"\n\n[[http]]\nname = \"edge\"\nvips = [\"{VIP4}\", \"{VIP6}\"]\nport = 80\n\
             [http.default]\nstatus = 301\nlocation = \"https://www.example.com\"\nappend_path = true\n\
             [[http.routes]]\npath = \"/healthz\"\nstatus = 200\nbody = \"ok\\n\"\n\
             headers = {{ \"Content-Type\" = \"text/plain\", \"Cache-Control\" = \"no-store\" }}\n\
             [[http.routes]]\npath = \"/\"\nhost = \"status.example.com\"\nstatus = 200\nbody = \"all systems normal\\n\"\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    Ok(HttpLab { lab, client, pop, config })
}

impl HttpLab {
    fn counters(&self) -> Result<BTreeMap<String, u64>> {
        self.lab.pop_counters(&self.pop, &self.config)
    }
    fn tcp(&self, field: &str) -> Result<u64> {
        self.client.snmp("Tcp", field)
    }
}

#[test]
fn curl_wget_python_and_wrk_get_the_configured_answers() -> Result<()> {
    let h = http_lab()?;
    let resets0 = h.tcp("EstabResets")? + h.tcp("AttemptFails")?;
    let out_rsts0 = h.tcp("OutRsts")?;
    let retrans0 = h.tcp("RetransSegs")?;

    // HTTP/1.1 redirect with the path and query appended.
    let out = h.client.stdout(&["curl", "-sS", "-D", "-", "-o", "/dev/null", &format!("http://{VIP4}/some/page?x=1")])?;
    assert!(out.starts_with("HTTP/1.1 301 Moved Permanently\r\n"), "{out}");
    assert!(out.contains("Location: https://www.example.com/some/page?x=1\r\n"), "{out}");
    assert!(out.contains("Connection: close\r\n"), "{out}");
    // HTTP/1.0, a route with its headers and body.
    let out = h.client.stdout(&["curl", "-sS", "--http1.0", "-D", "-", &format!("http://{VIP4}/healthz")])?;
    assert!(out.contains("200 OK") && out.contains("Content-Type: text/plain") && out.contains("Cache-Control: no-store"), "{out}");
    assert!(out.ends_with("\r\n\r\nok\n"), "{out:?}");
    // Host-specific route, and the same path for another host gets the default.
    let out = h.client.stdout(&["curl", "-sS", "-H", "Host: Status.Example.COM", &format!("http://{VIP4}/")])?;
    assert_eq!(out, "all systems normal\n");
    let code = h.client.stdout(&["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: other.example", &format!("http://{VIP4}/")])?;
    assert_eq!(code, "301");
    // HEAD: headers, Content-Length of the body, no body.
    let out = h.client.stdout(&["curl", "-sS", "-I", &format!("http://{VIP4}/healthz")])?;
    assert!(out.contains("200 OK") && out.contains("Content-Length: 3"), "{out}");
    // IPv6.
    let out = h.client.stdout(&["curl", "-sS", &format!("http://[{VIP6}]/healthz")])?;
    assert_eq!(out, "ok\n");
    // wget follows nothing here (the redirect target is outside the lab): ask for the route.
    let out = h.client.output(&["wget", "-q", "-S", "-O", "-", &format!("http://{VIP4}/healthz")])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // Python's http.client.
    let py = format!(
        "import http.client\nc = http.client.HTTPConnection('{VIP4}', 80, timeout=5)\nc.request('GET', '/healthz')\n\
         r = c.getresponse()\nprint(r.status, r.getheader('Cache-Control'), r.read().decode().strip())\n"
    );
    assert_eq!(h.client.stdout(&["python3", "-c", &py])?.trim(), "200 no-store ok");
    // A request that is not GET/HEAD gets a 400.
    let code = h.client.stdout(&["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", &format!("http://{VIP4}/healthz")])?;
    assert_eq!(code, "400");

    // Clean closes so far: no resets either way, no retransmissions.
    assert_eq!(h.tcp("EstabResets")? + h.tcp("AttemptFails")?, resets0, "the client saw resets");
    assert_eq!(h.tcp("OutRsts")?, out_rsts0, "the client sent resets");
    assert_eq!(h.tcp("RetransSegs")?, retrans0, "retransmissions with single clients");

    // wrk: many connections, every one answered.
    let wrk = h.client.stdout(&["wrk", "-t1", "-c16", "-d2s", &format!("http://{VIP4}/healthz")])?;
    assert!(!wrk.contains("Socket errors") && !wrk.contains("Non-2xx"), "{wrk}");
    let requests: u64 = wrk.lines().find_map(|l| l.trim().split_once(" requests in").map(|(n, _)| n.trim().parse().unwrap_or(0))).unwrap_or(0);
    assert!(requests > 1000, "{wrk}");

    // wrk aborts the connections it has open when its time is up (at most one per
    // connection); beyond that, no resets and only a trickle of retransmissions.
    let resets = h.tcp("EstabResets")? + h.tcp("AttemptFails")? - resets0;
    assert!(resets <= 16, "{resets} resets for 16 wrk connections");
    let retrans = h.tcp("RetransSegs")? - retrans0;
    assert!(retrans * 100 <= requests, "{retrans} retransmissions for {requests} requests");

    let c = h.counters()?;
    assert!(c["http.responses"] >= requests + 8, "{c:?}");
    assert_eq!(c["http.bad_request"], 1, "{c:?}");
    assert!(c["http.syn_answered"] >= requests, "{c:?}");
    // Each client's FIN after our answer verifies against the cookie and is acknowledged
    // (about one in 4096 looks like a FIN before any request, by the cookie's 12 ISN bits,
    // and gets our FIN|ACK, which closes it too); wrk aborts at most 16 with a RST.
    assert!(c["http.fin_closed"] + c["http.fin_acked"] + 16 >= requests, "{c:?}");
    assert!(c["http.fin_acked"] * 1000 <= requests + 1000 * 16, "FINs taken for first segments: {c:?}");
    assert_eq!(c["drop.http_bad_cookie"], 0, "a real client's segment failed the cookie: {c:?}");
    let stats = h.lab.pop(&h.pop, &h.config, &["stats", "--json", "--interval", "0"])?;
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout)?;
    let routes = v["http_routes"].as_array().unwrap();
    let healthz = routes.iter().find(|r| r["route"] == "edge /healthz").unwrap();
    assert!(healthz["answered"].as_u64().unwrap() >= requests, "{routes:?}");
    Ok(())
}

#[test]
fn syn_flood_leaves_no_state_and_curl_keeps_working() -> Result<()> {
    let h = http_lab()?;
    let before = h.counters()?;
    let mut flood = h.client.command("hping3");
    let mut flood = flood
        .args(["-q", "-S", "-p", "80", "-i", "u200", "--rand-source", VIP4])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Let the flood get going (a thousand SYNs answered) before checking curl under it.
    pop_lab::wait_until(Duration::from_secs(15), "the SYN flood to reach the PoP", || {
        h.counters().ok().filter(|c| c["http.syn_answered"] >= before["http.syn_answered"] + 1000).map(|_| ())
    })?;
    let mut ok = 0;
    for _ in 0..40 {
        let out = h.client.output(&["curl", "-sS", "--max-time", "3", &format!("http://{VIP4}/healthz")])?;
        if String::from_utf8_lossy(&out.stdout) == "ok\n" {
            ok += 1;
        }
    }
    let _ = flood.kill();
    let _ = flood.wait();
    assert_eq!(ok, 40, "curl failed during the SYN flood");
    let after = h.counters()?;
    assert!(after["http.syn_answered"] - before["http.syn_answered"] > 1000, "{after:?}");
    // No state anywhere: the PoP's kernel holds no TCP sockets for the VIP.
    let ss = h.pop.stdout(&["ss", "-Htan", "state", "all", "( sport = :80 )"])?;
    assert!(ss.trim().is_empty(), "sockets on the PoP: {ss}");
    Ok(())
}

#[test]
fn split_requests_get_400_and_retransmitted_requests_get_the_same_answer() -> Result<()> {
    let h = http_lab()?;
    // A first segment that ends inside the Host header: answered 400 at once (there is
    // no state to wait for the rest in).
    let py = format!(
        "import socket\ns = socket.create_connection(('{VIP4}', 80), timeout=5)\n\
         s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n\
         s.send(b'GET /healthz HTTP/1.1\\r\\nHost: a')\nprint(s.recv(4096).split(b'\\r\\n')[0].decode())\n"
    );
    assert_eq!(h.client.stdout(&["python3", "-c", &py])?.trim(), "HTTP/1.1 400 Bad Request");

    // The same request segment twice (a retransmission) gets byte-identical answers.
    use pop_lab::{frames, testrun};
    let prog = testrun::pinned_program(&h.lab.bpffs_dir().join("pop").join("prog"))?;
    let frame = |seq: u32, ack: u32, flags: u8, payload: &[u8]| frames::tcp4([203, 0, 113, 80], 40000, seq, ack, flags, payload);
    let synack = testrun::run(&prog, &frame(1000, 0, 0x02, &[]))?;
    assert_eq!(synack.verdict, testrun::XDP_TX);
    let t = &synack.frame[34..];
    assert_eq!(t[13], 0x12, "SYN-ACK flags");
    let cookie = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let request = frame(1001, cookie.wrapping_add(1), 0x18, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let first = testrun::run(&prog, &request)?;
    let again = testrun::run(&prog, &request)?;
    assert_eq!(first.verdict, testrun::XDP_TX);
    assert_eq!(first.frame, again.frame, "a retransmitted request must get the same answer");
    assert!(String::from_utf8_lossy(&first.frame[54..]).ends_with("\r\n\r\nok\n"));
    // An ACK a few bytes on (as if we had sent data) is a later segment, and one far
    // off is forged: both dropped, never answered.
    let before = h.counters()?;
    for (ack, counter) in [(cookie.wrapping_add(7), "drop.http_later_segment"), (cookie.wrapping_add(1 << 20), "drop.http_bad_cookie")] {
        let seg = frame(1001, ack, 0x18, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(testrun::run(&prog, &seg)?.verdict, testrun::XDP_DROP);
        let c = h.counters()?;
        assert_eq!(c[counter] - before[counter], 1, "{counter}: {c:?}");
    }
    let c = h.counters()?;
    assert!(c["http.bad_request"] >= 1, "{c:?}");
    Ok(())
}

/// The responder keeps no state, so SIGKILL of the controller does not interrupt it, and
/// a new controller takes over the pinned route table.
#[test]
fn http_answers_continue_through_a_controller_sigkill_and_restart() -> Result<()> {
    let mut h = http_lab()?;
    let pid = h.lab.daemon_pid("pop").unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = h.lab.stop_daemon("pop")?;
    for _ in 0..20 {
        assert_eq!(h.client.stdout(&["curl", "-sS", "--max-time", "3", &format!("http://{VIP4}/healthz")])?, "ok\n");
    }
    h.lab.start_pop(&h.pop, "pop", &h.config)?;
    for _ in 0..20 {
        assert_eq!(h.client.stdout(&["curl", "-sS", "--max-time", "3", &format!("http://{VIP4}/healthz")])?, "ok\n");
    }
    Ok(())
}

/// An IPv4/TCP frame from 192.0.2.1:`sport` to the VIP's port 80 with IP options
/// `ip_opts` and TCP options `tcp_opts` (each a multiple of 4 bytes), checksums right.
fn tcp4_frame(ip_opts: &[u8], tcp_opts: &[u8], sport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    pop_lab::frames::tcp4_with_options(ip_opts, tcp_opts, [203, 0, 113, 80], sport, seq, ack, flags, payload)
}

const F_FIN: u8 = 0x01;
const F_SYN: u8 = 0x02;
const F_PSH: u8 = 0x08;
const F_ACK: u8 = 0x10;
const F_URG: u8 = 0x20;
/// MSS 1460, the option every real SYN carries.
const MSS_1460: [u8; 4] = [2, 4, 0x05, 0xb4];

/// Crafted segments no client sends are dropped, each under a counter, and never
/// answered: SYN with FIN/ACK/URG/PSH or data, no ACK, and IPv4 options (a reply would
/// carry them back: source route, record route, timestamps).
#[test]
fn crafted_segments_and_ip_options_are_dropped_and_counted() -> Result<()> {
    use pop_lab::testrun;
    let h = http_lab()?;
    let prog = testrun::pinned_program(&h.lab.bpffs_dir().join("pop").join("prog"))?;
    let before = h.counters()?;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let crafted: &[(&str, Vec<u8>)] = &[
        ("SYN|FIN", tcp4_frame(&[], &MSS_1460, 40001, 1000, 0, F_SYN | F_FIN, &[])),
        ("SYN|ACK", tcp4_frame(&[], &MSS_1460, 40001, 1000, 5, F_SYN | F_ACK, &[])),
        ("SYN|URG", tcp4_frame(&[], &MSS_1460, 40001, 1000, 0, F_SYN | F_URG, &[])),
        ("SYN|PSH", tcp4_frame(&[], &MSS_1460, 40001, 1000, 0, F_SYN | F_PSH, &[])),
        ("SYN with data", tcp4_frame(&[], &MSS_1460, 40001, 1000, 0, F_SYN, request)),
        ("data without ACK", tcp4_frame(&[], &[], 40001, 1001, 0, F_PSH, request)),
        ("FIN without ACK", tcp4_frame(&[], &[], 40001, 1001, 0, F_FIN, &[])),
    ];
    for (what, frame) in crafted {
        assert_eq!(testrun::run(&prog, frame)?.verdict, testrun::XDP_DROP, "{what}");
    }
    // IP options: a record-route option (7) with room for one address, and a NOP pad.
    let rr = [7, 7, 4, 0, 0, 0, 0, 1];
    let opt_frames = [
        tcp4_frame(&rr, &MSS_1460, 40002, 1000, 0, F_SYN, &[]),
        tcp4_frame(&rr, &[], 40002, 1001, 1, F_ACK | F_PSH, request),
        tcp4_frame(&rr, &[], 40002, 1001, 1, F_ACK | F_FIN, &[]),
    ];
    for frame in &opt_frames {
        assert_eq!(testrun::run(&prog, frame)?.verdict, testrun::XDP_DROP, "IP options");
    }
    // The same SYN without options is answered, with ECN bits too (RFC 3168 setup).
    let syn = testrun::run(&prog, &tcp4_frame(&[], &MSS_1460, 40003, 1000, 0, F_SYN | 0xc0, &[]))?;
    assert_eq!(syn.verdict, testrun::XDP_TX);
    assert_eq!(syn.frame[34 + 13], F_SYN | F_ACK);
    let after = h.counters()?;
    let delta = |k: &str| after[k] - before[k];
    assert_eq!(delta("drop.http_malformed"), crafted.len() as u64, "{after:?}");
    assert_eq!(delta("drop.http_ip_options"), opt_frames.len() as u64, "{after:?}");
    assert_eq!(delta("http.syn_answered"), 1, "{after:?}");
    Ok(())
}

/// No segment is larger than the client's MSS: a SYN asking for less than 536 (the
/// smallest MSS a cookie encodes, and the cap on every configured response) is dropped;
/// at 536 the longest answer (a redirect with a 255-byte target appended) still fits.
#[test]
fn answers_respect_the_clients_mss() -> Result<()> {
    use pop_lab::testrun;
    let h = http_lab()?;
    let prog = testrun::pinned_program(&h.lab.bpffs_dir().join("pop").join("prog"))?;
    let before = h.counters()?;
    let tiny = tcp4_frame(&[], &[1, 1, 1, 1, 2, 4, 0, 200], 40010, 5000, 0, F_SYN, &[]);
    let r = testrun::run(&prog, &tiny)?;
    assert_eq!(r.verdict, testrun::XDP_DROP);
    let syn = testrun::run(&prog, &tcp4_frame(&[], &[2, 4, 0x02, 0x18], 40011, 5000, 0, F_SYN, &[]))?;
    assert_eq!(syn.verdict, testrun::XDP_TX);
    let t = &syn.frame[34..];
    assert_eq!(&t[20..24], &[2, 4, 0x02, 0x18], "SYN-ACK MSS option");
    let cookie = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let target = format!("/{}", "a".repeat(254));
    let request = format!("GET {target} HTTP/1.1\r\nHost: www.example.com\r\n\r\n");
    let resp = testrun::run(&prog, &tcp4_frame(&[], &[], 40011, 5001, cookie.wrapping_add(1), F_ACK | F_PSH, request.as_bytes()))?;
    assert_eq!(resp.verdict, testrun::XDP_TX);
    let payload = &resp.frame[54..];
    assert!(String::from_utf8_lossy(payload).contains(&format!("Location: https://www.example.com{target}\r\n")));
    assert!(payload.len() <= 536, "{} bytes of response for MSS 536", payload.len());
    let after = h.counters()?;
    assert_eq!(after["drop.http_small_mss"] - before["drop.http_small_mss"], 1, "{after:?}");
    // pop check refuses a response that could not fit that segment.
    let big = h.lab.write(
        "big.toml",
        &format!("[[http]]\nname = \"big\"\nvips = [\"{VIP4}\"]\nport = 80\n[http.default]\nstatus = 200\nbody = \"{}\"\n", "x".repeat(500)),
    )?;
    let out = h.lab.pop(&h.pop, &big, &["check"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("big.toml:") && err.contains("at most 536"), "{err}");
    Ok(())
}

const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A few KB of cookies, as a browser sends for a busy site.
fn cookies(bytes: usize) -> String {
    let mut c = String::from("Cookie: ");
    let mut i = 0;
    while c.len() < bytes {
        c += &format!("c{i}={}; ", "v".repeat(90));
        i += 1;
    }
    c.trim_end_matches("; ").to_string()
}

/// A browser following an http:// link: request line and Host in the first segment,
/// then KBs of cookies over several more. It gets its redirect from the first segment;
/// the rest is never answered, and the connection closes without a timeout.
#[test]
fn browser_sized_requests_get_their_redirect() -> Result<()> {
    let h = http_lab()?;
    let before = h.counters()?;
    let resets0 = h.tcp("EstabResets")? + h.tcp("AttemptFails")?;
    let out_rsts0 = h.tcp("OutRsts")?;
    let retrans0 = h.tcp("RetransSegs")?;
    let mut n = 0;
    for (size, url) in
        [(3000, format!("http://{VIP4}/a/page?q=1")), (8000, format!("http://{VIP4}/a/page?q=1")), (5000, format!("http://[{VIP6}]/a/page?q=1"))]
    {
        let cookie = cookies(size);
        let out = h.client.output(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-A",
            BROWSER_UA,
            "-H",
            &cookie,
            "-H",
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "-H",
            "Accept-Language: en-GB,en;q=0.9",
            &url,
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{size} B of cookies: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.starts_with("HTTP/1.1 301 Moved Permanently\r\n"), "{size} B of cookies: {text}");
        assert!(text.contains("Location: https://www.example.com/a/page?q=1\r\n"), "{text}");
        n += 1;
    }
    // Every socket is gone at once (no retransmission, no orphan waiting out a timer).
    pop_lab::wait_until(Duration::from_secs(5), "the client's sockets to the VIP to close", || {
        let ss = h.client.stdout(&["ss", "-Htan", "state", "all", "( dport = :80 )"]).ok()?;
        ss.trim().is_empty().then_some(())
    })?;
    assert_eq!(h.tcp("EstabResets")? + h.tcp("AttemptFails")?, resets0, "the client saw resets of open connections");
    assert_eq!(h.tcp("OutRsts")?, out_rsts0, "the client sent resets");
    assert_eq!(h.tcp("RetransSegs")?, retrans0, "the client retransmitted");
    let c = h.counters()?;
    let delta = |k: &str| c[k] - before[k];
    assert_eq!(delta("http.responses"), n, "{c:?}");
    assert_eq!(delta("http.bad_request"), 0, "{c:?}");
    // The cookie segments after the first were seen and dropped, never answered, and
    // each FIN acknowledged; none of it counts as forged.
    assert!(delta("drop.http_later_segment") >= n, "{c:?}");
    assert!(delta("http.fin_closed") + delta("http.fin_acked") >= n, "{c:?}");
    assert_eq!(delta("drop.http_bad_cookie"), 0, "{c:?}");
    Ok(())
}

/// A client writing its request in small pieces (one segment each): answered once from
/// the first piece when it holds the request line and Host; 400 when it does not; 400
/// for two Host headers.
#[test]
fn requests_written_in_small_pieces() -> Result<()> {
    let h = http_lab()?;
    let before = h.counters()?;
    // Writes the pieces 20 ms apart (each its own segment), then reads to EOF.
    let client = |pieces: &[&str]| -> Result<String> {
        let list: Vec<String> = pieces.iter().map(|p| format!("{:?}", p)).collect();
        let py = format!(
            "import socket, time, sys\ns = socket.create_connection(('{VIP4}', 80), timeout=5)\n\
             s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n\
             for p in [{}]:\n    s.send(p.encode())\n    time.sleep(0.02)\n\
             data = b''\nwhile True:\n    d = s.recv(65536)\n    if not d: break\n    data += d\n\
             s.close()\nsys.stdout.write(data.decode())\n",
            list.join(", ")
        );
        h.client.stdout(&["python3", "-c", &py])
    };
    let out = client(&["GET /healthz HTTP/1.1\r\nHost: www.example.com\r\n", "User-Agent: pieces/1\r\n", "Accept: */*\r\n", "\r\n"])?;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\nok\n"), "{out:?}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "answered more than once: {out:?}");
    let out = client(&["GET /healthz HTTP/1.1\r\n", "Host: www.example.com\r\n", "\r\n"])?;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out:?}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out:?}");
    let out = client(&["GET /hea", "lthz HTTP/1.1\r\nHost: www.example.com\r\n\r\n"])?;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out:?}");
    let out = client(&["GET /healthz HTTP/1.1\r\nHost: www.example.com\r\nHost: status.example.com\r\n\r\n"])?;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "two Host headers: {out:?}");
    let c = h.counters()?;
    assert_eq!(c["http.responses"] - before["http.responses"], 1, "{c:?}");
    assert_eq!(c["http.bad_request"] - before["http.bad_request"], 3, "{c:?}");
    // Every later piece was dropped, never answered.
    assert!(c["drop.http_later_segment"] - before["drop.http_later_segment"] >= 4, "{c:?}");
    pop_lab::wait_until(Duration::from_secs(5), "the client's sockets to the VIP to close", || {
        let ss = h.client.stdout(&["ss", "-Htan", "state", "all", "( dport = :80 )"]).ok()?;
        ss.trim().is_empty().then_some(())
    })?;
    Ok(())
}

/// The segments of one connection, crafted: what verifies against the cookie and what
/// cannot, and what each gets.
#[test]
fn later_segments_and_fins_are_never_answered_twice_or_acked_blindly() -> Result<()> {
    use pop_lab::testrun;
    let h = http_lab()?;
    let prog = testrun::pinned_program(&h.lab.bpffs_dir().join("pop").join("prog"))?;
    let syn = testrun::run(&prog, &tcp4_frame(&[], &MSS_1460, 40020, 7000, 0, F_SYN, &[]))?;
    let t = &syn.frame[34..];
    let cookie = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let tcp = |f: &[u8]| -> (u32, u32, u8, usize) {
        let t = &f[34..];
        (u32::from_be_bytes([t[4], t[5], t[6], t[7]]), u32::from_be_bytes([t[8], t[9], t[10], t[11]]), t[13], f.len() - 54)
    };
    // First segment: request line, Host, part of the cookies (no end of headers).
    let first = format!("GET /healthz HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: {BROWSER_UA}\r\n{}", &cookies(1400)[..1300]);
    let answer = testrun::run(&prog, &tcp4_frame(&[], &[], 40020, 7001, cookie.wrapping_add(1), F_ACK, first.as_bytes()))?;
    assert_eq!(answer.verdict, testrun::XDP_TX);
    let (seq, ack, flags, len) = tcp(&answer.frame);
    assert_eq!((seq, flags), (cookie.wrapping_add(1), F_ACK | F_PSH | F_FIN));
    assert_eq!(ack, 7001 + first.len() as u32, "the answer acknowledges exactly the bytes it saw");
    assert!(String::from_utf8_lossy(&answer.frame[54..]).ends_with("\r\n\r\nok\n"));
    let after_answer = cookie.wrapping_add(1 + len as u32 + 1);
    // The rest of the request, sent before or after our answer arrived: dropped.
    let rest = b"; more=cookies\r\nAccept: */*\r\n\r\n";
    let rest_seq = 7001 + first.len() as u32;
    for ack in [cookie.wrapping_add(1), after_answer] {
        assert_eq!(testrun::run(&prog, &tcp4_frame(&[], &[], 40020, rest_seq, ack, F_ACK | F_PSH, rest))?.verdict, testrun::XDP_DROP);
    }
    // The client's FIN after our answer (alone, or with the rest of the request):
    // acknowledged, nothing else sent.
    let fin_seq = rest_seq + rest.len() as u32;
    for (frame, want_ack) in [
        (tcp4_frame(&[], &[], 40020, fin_seq, after_answer, F_ACK | F_FIN, &[]), fin_seq + 1),
        (tcp4_frame(&[], &[], 40020, rest_seq, after_answer, F_ACK | F_PSH | F_FIN, rest), fin_seq + 1),
    ] {
        let out = testrun::run(&prog, &frame)?;
        assert_eq!(out.verdict, testrun::XDP_TX);
        assert_eq!(tcp(&out.frame), (after_answer, want_ack, F_ACK, 0), "a verified FIN is acknowledged");
    }
    // Forged segments fail the cookie and are dropped, never answered: FIN|ACK and data
    // with random numbers, the same on another port, and a cookie from another connection.
    let before = h.counters()?;
    let forged = [
        tcp4_frame(&[], &[], 41234, 0x1234_5678, 0x9abc_def0, F_ACK | F_FIN, &[]),
        tcp4_frame(&[], &[], 41234, 0x1234_5678, 0x9abc_def0, F_ACK | F_PSH, first.as_bytes()),
        tcp4_frame(&[], &[], 40099, fin_seq, after_answer, F_ACK | F_FIN, &[]),
        tcp4_frame(&[], &[], 40099, 7001, cookie.wrapping_add(1), F_ACK | F_PSH, first.as_bytes()),
    ];
    for frame in &forged {
        assert_eq!(testrun::run(&prog, frame)?.verdict, testrun::XDP_DROP, "a forged segment is dropped");
    }
    let after = h.counters()?;
    assert_eq!(after["drop.http_bad_cookie"] - before["drop.http_bad_cookie"], forged.len() as u64, "{after:?}");
    // A FIN straight after the handshake verifies: our FIN and its ACK.
    let syn = testrun::run(&prog, &tcp4_frame(&[], &MSS_1460, 40021, 9000, 0, F_SYN, &[]))?;
    let t = &syn.frame[34..];
    let cookie = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let out = testrun::run(&prog, &tcp4_frame(&[], &[], 40021, 9001, cookie.wrapping_add(1), F_ACK | F_FIN, &[]))?;
    assert_eq!(out.verdict, testrun::XDP_TX);
    assert_eq!(tcp(&out.frame), (cookie.wrapping_add(1), 9002, F_FIN | F_ACK, 0));
    // The ACK of our answer (or any bare ACK) is dropped.
    assert_eq!(testrun::run(&prog, &tcp4_frame(&[], &[], 40021, 9002, cookie.wrapping_add(2), F_ACK, &[]))?.verdict, testrun::XDP_DROP);
    Ok(())
}

/// TCP timestamps on the wire: a SYN offering them (and an MSS with room for them)
/// gets them back in the SYN-ACK, with its TSval echoed; the answer to a request that
/// carries them echoes the request's TSval and repeats pop's own (never backwards). A
/// SYN whose MSS leaves no room for the 12 option bytes beside a whole answer, or that
/// offers none, gets a SYN-ACK without them.
#[test]
fn timestamps_are_echoed_when_offered_and_there_is_room() -> Result<()> {
    use pop_lab::testrun;
    let h = http_lab()?;
    let prog = testrun::pinned_program(&h.lab.bpffs_dir().join("pop").join("prog"))?;
    // As Linux sends them: MSS, SACK permitted, timestamps, NOP, window scale.
    let syn_opts = |mss: u16, tsval: u32| {
        let mut o = vec![2, 4];
        o.extend(mss.to_be_bytes());
        o.extend([4, 2, 8, 10]);
        o.extend(tsval.to_be_bytes());
        o.extend([0, 0, 0, 0, 1, 3, 3, 7]);
        o
    };
    let syn = testrun::run(&prog, &tcp4_frame(&[], &syn_opts(1460, 0x1122_3344), 40020, 7000, 0, F_SYN, &[]))?;
    assert_eq!(syn.verdict, testrun::XDP_TX);
    let t = &syn.frame[34..];
    assert_eq!(&t[20..24], &[2, 4, 0x05, 0xb4], "MSS first");
    let (our_ts, echo) = pop_lab::frames::tcp_timestamps(t).expect("the SYN-ACK carries timestamps");
    assert_eq!(echo, 0x1122_3344, "TSecr is the SYN's TSval");
    assert_ne!(our_ts, 0, "client_rtt_sample = 1: every SYN-ACK carries pop's clock");
    let cookie = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);

    let mut opts = vec![1, 1, 8, 10];
    opts.extend(0x1122_3400u32.to_be_bytes());
    opts.extend(our_ts.to_be_bytes());
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp = testrun::run(&prog, &tcp4_frame(&[], &opts, 40020, 7001, cookie.wrapping_add(1), F_ACK | F_PSH, request))?;
    assert_eq!(resp.verdict, testrun::XDP_TX);
    let t = &resp.frame[34..];
    let (their_ts, echo) = pop_lab::frames::tcp_timestamps(t).expect("the answer carries timestamps");
    assert_eq!(echo, 0x1122_3400, "TSecr is the request's TSval");
    // Never backwards (RFC 7323): later segments repeat the SYN-ACK's TSval, as echoed.
    assert_eq!(their_ts, our_ts, "the answer's TSval repeats the SYN-ACK's");
    assert!(String::from_utf8_lossy(&t[32..]).starts_with("HTTP/1.1 200 OK\r\n"), "the answer follows the 32-byte header");

    // macOS orders its options otherwise (MSS, NOP, WS, NOP, NOP, TS, SACK, EOL): found
    // by the option walk rather than read in place.
    let mut mac = vec![2, 4, 0x05, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10];
    mac.extend(0x5566_7788u32.to_be_bytes());
    mac.extend([0, 0, 0, 0, 4, 2, 0, 0]);
    let syn = testrun::run(&prog, &tcp4_frame(&[], &mac, 40022, 7000, 0, F_SYN, &[]))?;
    let t = &syn.frame[34..];
    assert_eq!(&t[20..24], &[2, 4, 0x05, 0xb4], "macOS SYN: MSS");
    assert_eq!(pop_lab::frames::tcp_timestamps(t).map(|(_, echo)| echo), Some(0x5566_7788), "macOS SYN: timestamps echoed");

    for (what, opts) in [("MSS 540, no room", syn_opts(540, 5)), ("no timestamps offered", MSS_1460.to_vec())] {
        let syn = testrun::run(&prog, &tcp4_frame(&[], &opts, 40021, 7000, 0, F_SYN, &[]))?;
        assert_eq!(syn.verdict, testrun::XDP_TX, "{what}");
        assert_eq!(pop_lab::frames::tcp_timestamps(&syn.frame[34..]), None, "{what}: no timestamps in the SYN-ACK");
    }
    Ok(())
}

/// Real clients' round trips, measured in the path: every curl connection (Linux
/// offers timestamps) is one round trip in the VIP's Prometheus histogram, and `pop
/// top` shows the client prefix's p50 and p99.
#[test]
fn client_round_trips_are_measured_per_vip_and_shown_per_prefix() -> Result<()> {
    let h = http_lab()?;
    let before = h.counters()?;
    let n = 40;
    for _ in 0..n {
        let out = h.client.stdout(&["curl", "-sS", "--max-time", "2", &format!("http://{VIP4}/healthz")])?;
        assert_eq!(out, "ok\n");
    }
    let after = h.counters()?;
    assert_eq!(after["rtt.measured"] - before["rtt.measured"], n, "one round trip per connection: {after:?}");

    let metrics = h.pop.stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"])?;
    let series = format!("{{vip=\"{VIP4}\",port=\"80\",path=\"http\"}}");
    let value = |name: &str| -> f64 {
        metrics.lines().find_map(|l| l.strip_prefix(&format!("{name}{series} "))).and_then(|v| v.parse().ok()).unwrap_or(-1.0)
    };
    assert_eq!(value("pop_client_rtt_seconds_count"), n as f64, "{metrics}");
    let mean = value("pop_client_rtt_seconds_sum") / n as f64;
    // A veth round trip and curl's turn-around: well under 100 ms even on a busy host.
    assert!(mean > 0.0 && mean < 0.1, "mean round trip {mean} s\n{metrics}");
    let lint = pop_lab::promtool_check_metrics(&metrics)?;
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}");

    // `pop top` lists prefixes with traffic in its window: keep some coming.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, stop) = (h.client.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.output(&["curl", "-sS", "--max-time", "1", &format!("http://{VIP4}/healthz")]);
            }
        })
    };
    let top = h.lab.pop(&h.pop, &h.config, &["top", "--count", "1", "--interval", "1"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    let top = String::from_utf8_lossy(&top?.stdout).into_owned();
    assert!(top.contains("rtt p50 ms") && top.contains("rtt p99 ms"), "{top}");
    let row = top.lines().find(|l| l.starts_with("192.0.2.0/24")).unwrap_or_else(|| panic!("no row for the client's prefix:\n{top}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    let p50: f64 = cols[2].parse().unwrap_or_else(|_| panic!("p50 of {row:?}"));
    let p99: f64 = cols[3].parse().unwrap_or_else(|_| panic!("p99 of {row:?}"));
    assert!(p50 > 0.0 && p50 <= p99 && p99 < 1000.0, "{row}");
    Ok(())
}

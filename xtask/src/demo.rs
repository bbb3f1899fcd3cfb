//! `cargo xtask demo`: a PoP in a namespace lab, shown to a newcomer in plain words.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use pop_lab::{Lab, wait_until};

const CLIENT: &str = "192.0.2.1";
const POP: &str = "192.0.2.2";
const DNS_VIP: &str = "203.0.113.53";

fn say(text: &str) {
    println!("\n==> {text}");
}

pub fn run() -> Result<()> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/pop").canonicalize()?;
    // SAFETY: single-threaded at this point; the lab reads POP_BIN when starting pop.
    unsafe { std::env::set_var("POP_BIN", &bin) };

    say("Building a lab: two network namespaces, 'client' and 'pop', joined by a veth pair.");
    let mut lab = Lab::new()?;
    let client = lab.host("client")?;
    let pop = lab.host("pop")?;
    lab.link(&client, "c0", &pop, "p0")?;
    lab.addr(&client, "c0", &format!("{CLIENT}/24"))?;
    lab.addr(&pop, "p0", &format!("{POP}/24"))?;
    lab.addr(&pop, "lo", &format!("{DNS_VIP}/32"))?;
    lab.route(&client, &format!("{DNS_VIP}/32 via {POP}"))?;
    // veth quirks: the client must run XDP to receive frames the PoP sends with XDP_TX,
    // and its sockets must send final checksums.
    lab.xdp_pass(&client, "c0")?;
    lab.tx_checksum_off(&client, "c0")?;
    println!("    client c0 {CLIENT}  <---veth--->  p0 {POP} pop   (DNS VIP {DNS_VIP} on the PoP's lo)");

    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data").canonicalize()?;
    let config = lab.pop_config(
        &pop,
        &format!(
            "[[interface]]\nname = \"p0\"\n\n[[dns]]\nvips = [\"{DNS_VIP}\"]\nzones = [\"{}\", \"{}\"]\n",
            data.join("example.com.zone").display(),
            data.join("wild.test.zone").display()
        ),
    )?;
    say(&format!("Starting `pop run` in the pop namespace with this config ({}):", config.display()));
    print!("{}", std::fs::read_to_string(&config)?.lines().map(|l| format!("    {l}\n")).collect::<String>());
    lab.start_pop(&pop, "pop", &config)?;
    let link = pop.stdout(&["ip", "-d", "link", "show", "dev", "p0"])?;
    if let Some(line) = link.lines().find(|l| l.contains("prog/xdp")) {
        println!("    p0 now runs an XDP program: {}", line.trim());
    }

    say("Sending traffic from the client: 100 pings and an HTTP download from a server in the pop namespace.");
    let www = lab.dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("hello.txt"), "hello from the PoP host\n")?;
    let www = www.to_string_lossy().into_owned();
    lab.spawn(&pop, "http", &["python3", "-m", "http.server", "--bind", POP, "--directory", &www, "8080"])?;
    let url = format!("http://{POP}:8080/hello.txt");
    let body = wait_until(Duration::from_secs(10), "the HTTP server", || {
        client.output(&["curl", "-sf", &url]).ok().filter(|o| o.status.success()).map(|o| o.stdout)
    })?;
    client.run(&["ping", "-q", "-c", "100", "-i", "0.01", POP])?;
    println!("    ping: 100 sent, 100 answered; curl got: {}", String::from_utf8_lossy(&body).trim());

    say("Asking the DNS VIP with dig. XDP answers from a table compiled from pop's own server:");
    let at = format!("@{DNS_VIP}");
    for args in [
        vec!["+norec", "+noall", "+answer", &at, "www.example.com", "A"],
        vec!["+norec", "+noall", "+answer", "+authority", &at, "nope.example.com", "A"],
        vec!["+short", &at, "id.server", "TXT", "CH"],
        vec!["+norec", "+noall", "+answer", &at, "something.wild.test", "A"],
    ] {
        let mut argv: Vec<&str> = vec!["dig"];
        argv.extend(args.iter().copied());
        println!("    $ {}", argv.join(" "));
        let out = client.stdout(&argv)?;
        print!("{}", out.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("      {l}\n")).collect::<String>());
    }
    println!("    The first three were answered in XDP (XDP_TX) without the packet reaching the");
    println!("    kernel stack; the wildcard name went to the server (XDP_PASS), which synthesized it.");

    say("The data-path counters (`pop stats`), read from the pinned per-CPU map:");
    let out = lab.pop(&pop, &config, &["stats", "--interval", "0"])?;
    print!("{}", String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("    {l}\n")).collect::<String>());
    println!("    dns.xdp.* are answers sent from XDP; dns.pass.* say why a query went to the");
    println!("    server; everything not addressed to a VIP (ping, HTTP) is passed untouched.");

    say("Stopping the controller: the XDP program stays attached (pinned), and still counts.");
    lab.stop_daemon("pop")?;
    client.run(&["ping", "-q", "-c", "10", "-i", "0.01", POP])?;
    let c = lab.pop_counters(&pop, &config)?;
    println!("    after 10 more pings with no controller running, l4.icmp = {}", c["l4.icmp"]);

    say("Restarting the controller: it swaps a fresh program into the pinned link; counters carry on.");
    lab.start_pop(&pop, "pop", &config)?;
    let c = lab.pop_counters(&pop, &config)?;
    println!("    l4.icmp = {} (kept across the restart)", c["l4.icmp"]);
    lab.stop_daemon("pop")?;
    let out = lab.pop(&pop, &config, &["detach"])?;
    println!("    `pop detach`: {}", String::from_utf8_lossy(&out.stdout).trim());

    say("Tearing the lab down (namespaces, processes, pins). Done.");
    drop(lab);
    Ok(())
}

//! `pop status` and the requests that change the running controller (`drain`,
//! `undrain`, `withdraw`, `announce`), over its control socket.

use anyhow::{Context as _, Result};

use crate::{
    config::Config,
    controller::control::{self, Request},
    status::StatusReport,
};

/// Prints the controller's status report, as text or JSON.
pub fn show(config: &Config, json: bool) -> Result<()> {
    let v = control::call(&config.pop.run_dir, &Request::Status)?;
    let report: StatusReport = serde_json::from_value(v).context("the controller's status report")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        print!("{}", report.render(now));
    }
    Ok(())
}

/// Sends `req` and prints the controller's one-line answer.
pub fn request(config: &Config, req: Request) -> Result<()> {
    let v = control::call(&config.pop.run_dir, &req)?;
    println!("{}", v.as_str().unwrap_or_default());
    Ok(())
}

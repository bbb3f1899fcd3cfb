//! The one apply used by start-up and reload: **plan** (work out every map entry and
//! check it fits, touching nothing) → **stage** (build the new state off to the side:
//! DNS sockets bound for new VIPs, every block's next table generation and every
//! service's idle Maglev half written, none of it visible to the data path) →
//! **commit** (the flips: DNS block generations, service entries, backend states,
//! HTTP routes, VIPs; each write recording what it replaced) → **finish** (servers
//! handed their new answers, old generations deleted). A failure at any step before
//! finish undoes everything done so far, newest first, so the data path, the DNS
//! servers and the health board are exactly what was live before; the error names
//! the step.

use std::fmt;

use crate::{
    config::Config,
    datapath::{
        undo::HashUndo,
        vip::{self, VipTable, VipUndo},
    },
    dns::runtime::{DnsRuntime, DnsStage, DnsUndo, Prepared},
    health::Board,
    http,
    lb::runtime::{LbRuntime, LbUndo},
};

/// The maps and servers the controller keeps in step with the config.
pub struct Live {
    pub dns: DnsRuntime,
    pub lb: LbRuntime,
    pub http: http::HttpMaps,
    pub vips: VipTable,
}

/// Where an apply failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Working out the entries (tables fit, ids free): nothing touched yet.
    Plan,
    /// Binding DNS sockets on VIPs not served yet.
    DnsBind,
    /// Writing the DNS tables' next generations, or flipping them live.
    DnsTable,
    /// Writing Maglev idle halves, backend states, or flipping service entries.
    Maglev,
    /// Writing HTTP_ROUTES.
    HttpRoutes,
    /// Writing VIPS and VIP_ADDRS.
    VipSync,
}

impl Step {
    /// The step's name in errors and in `pop.fault_inject`.
    pub fn name(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::DnsBind => "dns-bind",
            Step::DnsTable => "dns-table",
            Step::Maglev => "maglev",
            Step::HttpRoutes => "http-routes",
            Step::VipSync => "vip-sync",
        }
    }
}

/// A failed apply: the step, its error, and anything the rollback could not restore.
#[derive(Debug)]
pub struct ApplyError {
    pub step: Step,
    pub error: anyhow::Error,
    pub rollback_failed: Vec<String>,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "apply failed at step {}: {:#}", self.step.name(), self.error)?;
        if self.rollback_failed.is_empty() {
            write!(f, "\nrolled back: the data path and servers are as they were before")
        } else {
            write!(f, "\nthe rollback could not restore everything:\n  {}", self.rollback_failed.join("\n  "))
        }
    }
}

impl std::error::Error for ApplyError {}

/// Whether the test hook asks `step` to fail (debug builds only; see `pop.fault_inject`).
fn fault(config: &Config, step: Step) -> bool {
    fault_named(config, step.name())
}

/// As [`fault`], for a hook within a step (`maglev-stage`: the idle halves' writes).
fn fault_named(config: &Config, name: &str) -> bool {
    cfg!(debug_assertions) && config.pop.fault_inject.as_deref() == Some(name)
}

/// Makes `config` (its zones in `prepared`) live, all or nothing. Call inside the tokio
/// runtime (new DNS servers are spawned on it).
pub fn apply(live: &mut Live, config: &Config, prepared: Vec<Prepared>, board: &Board) -> Result<(), ApplyError> {
    let dns_stage =
        DnsRuntime::stage(&live.dns.maps(), prepared).map_err(|error| ApplyError { step: Step::DnsTable, error, rollback_failed: Vec::new() })?;
    apply_staged(live, config, dns_stage, board)
}

/// As [`apply`], with the DNS tables already staged (by [`DnsRuntime::stage`], which a
/// reload runs off the controller loop).
pub fn apply_staged(live: &mut Live, config: &Config, mut dns_stage: DnsStage, board: &Board) -> Result<(), ApplyError> {
    let at = |step: Step| move |error: anyhow::Error| ApplyError { step, error, rollback_failed: Vec::new() };
    let mut dns_undo = DnsUndo::default();

    // Plan: nothing else is written. The board as it will be decides new backends' state.
    let preview = board.preview(config);
    let planned = live
        .lb
        .plan(config, &preview)
        .map_err(at(Step::Plan))
        .and_then(|p| if p.failed.is_empty() { Ok(p) } else { Err(at(Step::Maglev)(anyhow::anyhow!("{}", p.failed.join("\n")))) })
        .and_then(|lb| Ok((lb, http::plan(&live.http.routes, config).map_err(at(Step::Plan))?)))
        .and_then(|(lb, http)| {
            let desired = vip::desired(config);
            live.vips.check_room(&desired).map_err(at(Step::Plan))?;
            Ok((lb, http, desired))
        });
    let (lb_plan, http_plan, desired) = match planned {
        Ok(p) => p,
        Err(mut e) => {
            e.rollback_failed.extend(live.dns.rollback(dns_stage, &mut dns_undo));
            return Err(e);
        }
    };

    // Stage: built off to the side; the data path and the servers still see the old.
    let staged = live
        .dns
        .bind(&mut dns_stage, fault(config, Step::DnsBind))
        .map_err(at(Step::DnsBind))
        .and_then(|()| live.lb.stage(&lb_plan, fault_named(config, "maglev-stage")).map_err(at(Step::Maglev)));
    if let Err(mut e) = staged {
        e.rollback_failed.extend(live.dns.rollback(dns_stage, &mut dns_undo));
        return Err(e);
    }

    // Commit: the flips, each recorded.
    let mut lb_undo = LbUndo::default();
    let mut http_undo = HashUndo::new("HTTP route table");
    let mut vip_undo = VipUndo::default();
    let committed = live
        .dns
        .commit(&dns_stage, &mut dns_undo, fault(config, Step::DnsTable))
        .map_err(at(Step::DnsTable))
        .and_then(|()| live.lb.commit(&lb_plan, &mut lb_undo, fault(config, Step::Maglev)).map_err(at(Step::Maglev)))
        .and_then(|()| http::commit(&mut live.http, &http_plan, &mut http_undo, fault(config, Step::HttpRoutes)).map_err(at(Step::HttpRoutes)))
        .and_then(|()| live.vips.commit(&desired, &mut vip_undo, fault(config, Step::VipSync)).map_err(at(Step::VipSync)));
    if let Err(mut e) = committed {
        // Newest first: VIPs, routes, services, DNS flips, then the staged generations.
        e.rollback_failed.extend(live.vips.rollback(&mut vip_undo));
        e.rollback_failed.extend(http_undo.restore(&mut live.http.routes));
        e.rollback_failed.extend(live.lb.rollback(&mut lb_undo));
        e.rollback_failed.extend(live.dns.rollback(dns_stage, &mut dns_undo));
        return Err(e);
    }

    // Finish: nothing here can leave the data path half-applied.
    board.sync(config);
    live.lb.finish(lb_plan, config);
    live.http.finish(&http_plan);
    live.dns.finish(dns_stage);
    Ok(())
}

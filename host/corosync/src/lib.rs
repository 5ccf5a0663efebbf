//! amflink's fabric on corosync. `amf fabric --corosync GROUP` runs a replica of the
//! arbiter ([`amf_fabric::replica`]) on every machine; this crate is its group: a CPG
//! closed process group named `GROUP`, multicast in agreed order
//! (`CPG_TYPE_AGREED`: every member delivers every message in one order, the sender
//! included, and membership changes at the same point of that order, which is the
//! virtual synchrony the replica relies on).
//!
//! The group is joined only while votequorum says this machine is quorate. When the
//! machine loses quorum (it is the minority of a partition) or its corosync dies, the
//! process leaves the group and tells the fabric ([`GroupEvent::Detached`]), which closes
//! every local link so its AMFs fence themselves; the majority's leader waits out the
//! self-fence bound before it replays their records. Back in quorum, the process joins
//! again as a new member and is handed the state.
//!
//! libcpg calls back through plain function pointers; the callbacks run inside
//! `cpg::dispatch` on this crate's thread and push what they get onto that thread's own
//! queue, so no state is shared between threads but the handle used to multicast.
#![forbid(unsafe_code)]

use amf_fabric::replica::{Delivery, Member};
use amf_fabric::server::{Group, GroupEvent};
use rust_corosync::{CsError, DispatchFlags, NodeId, cpg, quorum};
use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Wait between two attempts to reach corosync or quorum.
const RETRY_MS: u64 = 200;
/// How long a multicast may wait out corosync's flow control.
const MULTICAST_RETRY_MS_MAX: u64 = 2_000;

thread_local! {
    /// What the callbacks of the current `dispatch` delivered.
    static DELIVERED: RefCell<Vec<Delivery>> = const { RefCell::new(Vec::new()) };
}

fn member(nodeid: NodeId, pid: u32) -> Member {
    Member {
        nodeid: nodeid.into(),
        pid,
    }
}

fn on_message(_: &cpg::Handle, _: String, nodeid: NodeId, pid: u32, message: &[u8], _: usize) {
    let delivery = Delivery::Message {
        from: member(nodeid, pid),
        bytes: message.to_vec(),
    };
    DELIVERED.with(|delivered| delivered.borrow_mut().push(delivery));
}

fn on_membership(
    _: &cpg::Handle,
    _: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    joined: Vec<cpg::Address>,
) {
    let members_of = |addresses: Vec<cpg::Address>| {
        addresses
            .into_iter()
            .map(|address| member(address.nodeid, address.pid))
            .collect()
    };
    for gone in &left {
        tracing::info!(nodeid = u32::from(gone.nodeid), pid = gone.pid, reason = %gone.reason, "left the fabric's group");
    }
    let delivery = Delivery::Membership {
        members: members_of(members),
        left: members_of(left),
        joined: members_of(joined),
    };
    DELIVERED.with(|delivered| delivered.borrow_mut().push(delivery));
}

/// The CPG group the fabric multicasts through.
#[derive(Clone, Debug, Default)]
pub struct CorosyncGroup {
    /// The joined handle; `None` while out of the group.
    handle: Arc<Mutex<Option<Handle>>>,
}

/// `cpg::Handle` has no `Debug`.
struct Handle(cpg::Handle);

impl std::fmt::Debug for Handle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("cpg::Handle")
    }
}

impl Group for CorosyncGroup {
    fn multicast(&self, bytes: &[u8]) -> Result<(), String> {
        let guard = self.handle.lock().map_err(|_| "poisoned".to_string())?;
        let Some(Handle(handle)) = guard.as_ref() else {
            return Err("out of the group".into());
        };
        let mut waited_ms = 0;
        loop {
            match cpg::mcast_joined(handle, cpg::Guarantee::TypeAgreed, bytes) {
                Ok(()) => return Ok(()),
                Err(CsError::CsErrTryAgain) if waited_ms < MULTICAST_RETRY_MS_MAX => {
                    std::thread::sleep(Duration::from_millis(1));
                    waited_ms += 1;
                }
                Err(error) => return Err(format!("cpg_mcast_joined: {error}")),
            }
        }
    }
}

/// Joins CPG group `name` (whenever quorate) on a thread of its own, for ever; what it
/// delivers goes to `events`. The returned group multicasts.
pub fn start(name: String, events: mpsc::Sender<GroupEvent>) -> std::io::Result<CorosyncGroup> {
    let group = CorosyncGroup::default();
    let handle = Arc::clone(&group.handle);
    std::thread::Builder::new()
        .name("amf-corosync".into())
        .spawn(move || run(&name, &handle, &events))?;
    Ok(group)
}

fn run(name: &str, shared: &Mutex<Option<Handle>>, events: &mpsc::Sender<GroupEvent>) {
    let mut said = String::new();
    loop {
        let reason = match serve_once(name, shared, events) {
            Ok(reason) => reason,
            Err(reason) => reason,
        };
        if let Ok(mut handle) = shared.lock() {
            *handle = None;
        }
        if events
            .blocking_send(GroupEvent::Detached(reason.clone()))
            .is_err()
        {
            return;
        }
        if reason != said {
            tracing::warn!(%reason, "out of the fabric's group; trying again");
            said = reason;
        }
        std::thread::sleep(Duration::from_millis(RETRY_MS));
    }
}

/// Waits for quorum, joins, and relays deliveries until quorum or corosync is lost; why
/// it ended.
fn serve_once(
    name: &str,
    shared: &Mutex<Option<Handle>>,
    events: &mpsc::Sender<GroupEvent>,
) -> Result<String, String> {
    let quorum_model = quorum::ModelData::ModelV1(quorum::Model1Data {
        flags: quorum::Model1Flags::None,
        quorum_notification_fn: None,
        nodelist_notification_fn: None,
    });
    let (quorum_handle, _) = quorum::initialize(&quorum_model, 0)
        .map_err(|error| format!("cannot reach corosync's quorum service: {error}"))?;
    let quorate = || quorum::getquorate(&quorum_handle).unwrap_or(false);
    while !quorate() {
        if events.is_closed() {
            return Err("the fabric stopped".into());
        }
        std::thread::sleep(Duration::from_millis(RETRY_MS));
        // corosync gone: initialize again from the start.
        quorum::getquorate(&quorum_handle)
            .map_err(|error| format!("corosync's quorum service: {error}"))?;
    }
    let model = cpg::ModelData::ModelV1(cpg::Model1Data {
        flags: cpg::Model1Flags::None,
        deliver_fn: Some(on_message),
        confchg_fn: Some(on_membership),
        totem_confchg_fn: None,
    });
    let handle = cpg::initialize(&model, 0)
        .map_err(|error| format!("cannot reach corosync's CPG service: {error}"))?;
    let nodeid = cpg::local_get(&handle).map_err(|error| format!("cpg_local_get: {error}"))?;
    cpg::join(&handle, name).map_err(|error| format!("cpg_join {name}: {error}"))?;
    let me = member(nodeid, std::process::id());
    tracing::info!(%me, group = name, "joined the fabric's CPG group");
    *shared.lock().map_err(|_| "poisoned")? = Some(Handle(handle.clone()));
    if events.blocking_send(GroupEvent::Joined(me)).is_err() {
        return Err("the fabric stopped".into());
    }
    loop {
        // Blocks until one callback ran: the leader's ticks keep it turning.
        cpg::dispatch(&handle, DispatchFlags::One)
            .map_err(|error| format!("corosync's CPG service: {error}"))?;
        let delivered = DELIVERED.with(|delivered| std::mem::take(&mut *delivered.borrow_mut()));
        for delivery in delivered {
            if events
                .blocking_send(GroupEvent::Delivered(delivery))
                .is_err()
            {
                return Err("the fabric stopped".into());
            }
        }
        if !quorate() {
            let _ = cpg::leave(&handle, name);
            return Ok("this machine lost quorum".into());
        }
    }
}

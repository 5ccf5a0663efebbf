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

/// The CPG group the fabric multicasts through: proposals wait in a queue for a sender
/// thread of their own, which rides out corosync's flow control.
#[derive(Debug)]
pub struct CorosyncGroup {
    queue: Mutex<std::sync::mpsc::Sender<(u64, Vec<u8>)>>,
}

/// The joined handle and its membership's epoch; no handle while out of the group.
#[derive(Debug, Default)]
struct Joined {
    handle: Option<Handle>,
    epoch: u64,
}

/// `cpg::Handle` has no `Debug`.
struct Handle(cpg::Handle);

impl std::fmt::Debug for Handle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("cpg::Handle")
    }
}

impl Group for CorosyncGroup {
    fn multicast(&self, epoch: u64, bytes: Vec<u8>) {
        if let Ok(queue) = self.queue.lock() {
            // The sender thread lives as long as the process.
            let _ = queue.send((epoch, bytes));
        }
    }
}

/// Sends what is queued, in order, while its epoch is the joined one's.
fn send_queued(joined: &Mutex<Joined>, queue: &std::sync::mpsc::Receiver<(u64, Vec<u8>)>) {
    while let Ok((epoch, bytes)) = queue.recv() {
        loop {
            let Ok(guard) = joined.lock() else { return };
            let Some(Handle(handle)) = guard.handle.as_ref().filter(|_| guard.epoch == epoch)
            else {
                break;
            };
            match cpg::mcast_joined(handle, cpg::Guarantee::TypeAgreed, &bytes) {
                Ok(()) => break,
                Err(CsError::CsErrTryAgain) => {
                    drop(guard);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(error) => {
                    tracing::warn!(%error, "cpg_mcast_joined failed: the message is lost with this membership");
                    break;
                }
            }
        }
    }
}

/// Joins CPG group `name` (whenever quorate) on a thread of its own, for ever; what it
/// delivers goes to `events`. The returned group multicasts.
pub fn start(name: String, events: mpsc::Sender<GroupEvent>) -> std::io::Result<CorosyncGroup> {
    let (queue, queued) = std::sync::mpsc::channel();
    let joined = Arc::new(Mutex::new(Joined::default()));
    let sender_joined = Arc::clone(&joined);
    std::thread::Builder::new()
        .name("amf-corosync-tx".into())
        .spawn(move || send_queued(&sender_joined, &queued))?;
    std::thread::Builder::new()
        .name("amf-corosync".into())
        .spawn(move || run(&name, &joined, &events))?;
    Ok(CorosyncGroup {
        queue: Mutex::new(queue),
    })
}

fn run(name: &str, shared: &Mutex<Joined>, events: &mpsc::Sender<GroupEvent>) {
    let mut said = String::new();
    loop {
        let reason = match serve_once(name, shared, events) {
            Ok(reason) => reason,
            Err(reason) => reason,
        };
        if let Ok(mut joined) = shared.lock() {
            joined.handle = None;
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
    shared: &Mutex<Joined>,
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
    let epoch = {
        let mut joined = shared.lock().map_err(|_| "poisoned")?;
        joined.epoch += 1;
        joined.handle = Some(Handle(handle.clone()));
        joined.epoch
    };
    if events
        .blocking_send(GroupEvent::Joined { me, epoch })
        .is_err()
    {
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

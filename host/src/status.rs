//! `amf status`: what the members' superblocks say, for people and (with `--json`) for
//! programs. The JSON shape is documented in `docs/FORMAT.md` and kept stable.

use crate::active::{ClusterRebuild, ClusterRebuildState};
use crate::array::{Array, Health, level_number};
use crate::control::ServeStatus;
use crate::serve_cluster::AmfReport;
use crate::volume::CardSpec;
use amf_vfio::{CardProbe, VfioCard, VfioPaths};
use serde::Serialize;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Array identity.
    pub array_uuid: String,
    /// 5 or 6.
    pub level: u8,
    /// Chunk size in bytes.
    pub chunk_bytes: u32,
    /// Members in the array.
    pub member_count: u32,
    /// Start of the data area on each member.
    pub data_offset: u64,
    /// Bytes of the data area on each member.
    pub member_data_bytes: u64,
    /// Stripes.
    pub stripes: u64,
    /// Bytes the volume exports.
    pub volume_bytes: u64,
    /// Highest generation among the members.
    pub generation: u64,
    /// Overall health.
    pub health: Health,
    /// While a member is rebuilding: the first stripe not yet rebuilt, as the superblocks
    /// record it (0 otherwise).
    pub rebuild_next_stripe: u64,
    /// Every member slot, by index.
    pub members: Vec<MemberReport>,
    /// The running `amf serve`, when one answers on the control socket: its counters,
    /// failed members, rebuild and jobs with their progress; null when none runs.
    pub serving: Option<ServeStatus>,
    /// The AMFs of a cluster on these members (`amf serve --id N --fabric ADDR`), as each
    /// last wrote its `amf-N.status.json`: fabric membership, stripes held, intent records,
    /// protocol counters. Empty when no cluster AMF runs here.
    pub cluster: Vec<AmfReport>,
}

/// One member slot.
#[derive(Debug, Serialize)]
pub struct MemberReport {
    /// Index in the layout.
    pub index: u32,
    /// "active", "failed", "rebuilding", "stale" or "missing".
    pub state: &'static str,
    /// Where it was opened from (null when missing).
    pub path: Option<String>,
    /// Its own generation (null when missing).
    pub generation: Option<u64>,
    /// Its device identity (null when missing).
    pub member_uuid: Option<String>,
}

/// Builds the report for an opened array, and the `amf serve` serving it if any.
pub fn report(array: &Array, serving: Option<ServeStatus>) -> StatusReport {
    let superblock = &array.superblock;
    let members = array
        .slots()
        .iter()
        .enumerate()
        .map(|(index, slot)| {
            let member = array.member(index as u32);
            MemberReport {
                index: index as u32,
                state: slot.name(),
                path: member.map(|member| member.path.display().to_string()),
                generation: member.map(|member| member.superblock.generation),
                member_uuid: member.map(|member| {
                    uuid::Uuid::from_bytes(member.superblock.member_uuid).to_string()
                }),
            }
        })
        .collect();
    StatusReport {
        array_uuid: uuid::Uuid::from_bytes(superblock.array_uuid).to_string(),
        level: level_number(superblock),
        chunk_bytes: superblock.chunk_bytes,
        member_count: superblock.member_count,
        data_offset: superblock.data_offset,
        member_data_bytes: superblock.data_bytes,
        stripes: array.geometry.stripe_count(),
        volume_bytes: array.geometry.volume_bytes(),
        generation: superblock.generation,
        health: array.health(),
        rebuild_next_stripe: superblock.rebuild_next_stripe,
        members,
        serving,
        cluster: Vec::new(),
    }
}

/// Human-readable rendering.
pub fn render(report: &StatusReport) -> String {
    let mut text = format!(
        "array {}  RAID-{}  {} members  chunk {}  volume {} ({} stripes)\nhealth {}  generation {}  data offset {}  data per member {}\n",
        report.array_uuid,
        report.level,
        report.member_count,
        human_bytes(report.chunk_bytes.into()),
        human_bytes(report.volume_bytes),
        report.stripes,
        report.health.name(),
        report.generation,
        report.data_offset,
        human_bytes(report.member_data_bytes),
    );
    text.push_str("  index  state       generation  path\n");
    for member in &report.members {
        let generation = member
            .generation
            .map_or("-".to_string(), |generation| generation.to_string());
        let path = member.path.as_deref().unwrap_or("-");
        text.push_str(&format!(
            "  {:>5}  {:<10}  {:>10}  {}\n",
            member.index, member.state, generation, path
        ));
    }
    if let Some(serving) = &report.serving {
        text.push_str(&render_serving(serving));
    }
    for amf in &report.cluster {
        text.push_str(&render_cluster_amf(amf));
    }
    text
}

/// A status file older than this belongs to an AMF that no longer runs.
const CLUSTER_REPORT_STALE_MS: u64 = 3_000;

fn render_cluster_amf(amf: &AmfReport) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let age_ms = now_ms.saturating_sub(amf.updated_unix_ms);
    let cluster = &amf.cluster;
    let state = match (
        &cluster.down,
        age_ms > CLUSTER_REPORT_STALE_MS,
        &cluster.outage,
    ) {
        (Some(why), _, _) => format!("down ({why})"),
        (None, true, _) => format!("not answering (last seen {}s ago)", age_ms / 1000),
        (None, false, Some(outage)) => format!(
            "rejoining the fabric, requests held ({}, {:.1}s ago, {} attempts)",
            outage.reason,
            now_ms.saturating_sub(outage.since_unix_ms) as f64 / 1000.0,
            outage.attempts
        ),
        (None, false, None) => "serving".to_owned(),
    };
    let mut text = format!(
        "AMF {} (pid {}, nbd://{}): {state}; fabric ports {:?}; {} stripes held; {} intent \
         writes outstanding; {} dead peers' records; broadcasts {} (avoided {}), forwards {}, \
         invalidations {}, replays {}; failed members {:?}\n",
        cluster.port,
        amf.pid,
        amf.nbd,
        cluster.live_ports,
        cluster.stripes_held,
        cluster.intent_writes_outstanding,
        cluster.dead_records,
        cluster.broadcasts,
        cluster.broadcasts_avoided,
        cluster.forwards,
        cluster.invalidations,
        cluster.replays,
        cluster.failed_members,
    );
    if let Some(rebuild) = &cluster.rebuild {
        text.push_str(&render_cluster_rebuild(rebuild));
    }
    text
}

fn render_cluster_rebuild(rebuild: &ClusterRebuild) -> String {
    let state = match &rebuild.state {
        ClusterRebuildState::Running => "running".to_owned(),
        ClusterRebuildState::Done => "done: the member is in service".to_owned(),
        ClusterRebuildState::Stopped {
            reason,
            restarting: true,
        } => format!("stopped ({reason}); beginning again"),
        ClusterRebuildState::Stopped { reason, .. } => format!("stopped: {reason}"),
    };
    let driver = if rebuild.driving {
        "this AMF drives it"
    } else {
        "followed"
    };
    format!(
        "  rebuild of member {}: {} of {} stripes ({:.1}%), {driver}; {state}\n",
        rebuild.member,
        rebuild.next_stripe,
        rebuild.stripes,
        rebuild.next_stripe as f64 * 100.0 / rebuild.stripes.max(1) as f64,
    )
}

fn render_serving(serving: &ServeStatus) -> String {
    let volume = &serving.volume;
    let mut text = format!(
        "served by amf serve (pid {}): read {}, written {}, {} flushes, failed members {:?}\n",
        serving.pid,
        human_bytes(volume.read_bytes),
        human_bytes(volume.written_bytes),
        volume.flushes,
        serving.failed_members,
    );
    for task in &serving.tasks {
        let eta = task
            .eta_seconds
            .map_or_else(String::new, |seconds| format!(", eta {seconds:.0}s"));
        text.push_str(&format!(
            "  {:?}{}: {:?}, {:.1}% ({}/{} stripes), {}/s{eta}{}\n",
            task.kind,
            task.member
                .map_or_else(String::new, |m| format!(" of member {m}")),
            task.state,
            task.percent,
            task.stripes_done,
            task.stripes_total,
            human_bytes(task.rate_bytes_per_second as u64),
            task.error
                .as_ref()
                .map_or_else(String::new, |error| format!(": {error}")),
        ));
    }
    text
}

/// What `amf status --card SPEC` says about the card (`"card"` in the JSON).
#[derive(Debug, Serialize)]
pub struct CardReport {
    /// "host", "sim", "vfio" or "rtl".
    pub kind: &'static str,
    /// sim: the SRAM file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sram_path: Option<String>,
    /// sim: the SRAM file's size (null before its first use); vfio: the card's SRAM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sram_bytes: Option<u64>,
    /// vfio: what the card said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vfio: Option<VfioReport>,
}

/// A card reached through VFIO, read without resetting or driving it.
#[derive(Debug, Serialize)]
pub struct VfioReport {
    /// `DDDD:BB:DD.F`.
    pub pci_address: String,
    /// Its IOMMU group.
    pub iommu_group: u32,
    /// `"10ee:a3f1"`.
    pub pci_ids: String,
    /// The ID register as text (`"AMFL"`).
    pub id: String,
    /// Register map version, `"MAJOR.MINOR"`.
    pub register_map_version: String,
    /// The CAPS register.
    pub caps: u32,
    /// Whether VFIO can reset the function.
    pub resettable: bool,
    /// The interrupt the backend would use: "MSI-X", "MSI", "INTx" or null (polled).
    pub interrupt: Option<&'static str>,
}

/// Describes the card `spec` names. A vfio card is opened only long enough to read its
/// identity registers (no reset): an absent card, another device or a card in use by
/// `amf serve` is an error naming the PCI address.
pub fn card_report(spec: &CardSpec) -> Result<CardReport, amf_vfio::VfioError> {
    let mut report = CardReport {
        kind: "host",
        sram_path: None,
        sram_bytes: None,
        vfio: None,
    };
    match spec {
        CardSpec::Host => {}
        CardSpec::Sim(path) => {
            report.kind = "sim";
            report.sram_path = Some(path.display().to_string());
            report.sram_bytes = std::fs::metadata(path).ok().map(|metadata| metadata.len());
        }
        CardSpec::Rtl => report.kind = "rtl",
        CardSpec::Vfio(address) => {
            let probe = VfioCard::probe(&VfioPaths::default(), *address)?;
            report.kind = "vfio";
            report.sram_bytes = Some(probe.identity.sram_bytes);
            report.vfio = Some(vfio_report(&probe));
        }
    }
    Ok(report)
}

fn vfio_report(probe: &CardProbe) -> VfioReport {
    let identity = &probe.identity;
    VfioReport {
        pci_address: probe.address.to_string(),
        iommu_group: probe.iommu_group,
        pci_ids: format!("{:04x}:{:04x}", probe.vendor, probe.device),
        id: String::from_utf8_lossy(&identity.id.to_le_bytes()).into_owned(),
        register_map_version: format!("{}.{}", identity.version_major, identity.version_minor),
        caps: identity.caps,
        resettable: probe.resettable,
        interrupt: probe.interrupt.map(|kind| kind.name()),
    }
}

/// Human-readable rendering of the card.
pub fn render_card(report: &CardReport) -> String {
    let sram = report.sram_bytes.map_or("-".to_owned(), human_bytes);
    match (&report.vfio, &report.sram_path) {
        (Some(vfio), _) => format!(
            "card vfio {}  IOMMU group {}  ids {}  {} v{}  caps {:#x}  SRAM {}  interrupt {}  reset {}\n",
            vfio.pci_address,
            vfio.iommu_group,
            vfio.pci_ids,
            vfio.id,
            vfio.register_map_version,
            vfio.caps,
            sram,
            vfio.interrupt.unwrap_or("none (polled)"),
            if vfio.resettable {
                "by VFIO"
            } else {
                "by register only"
            },
        ),
        (None, Some(path)) => format!("card sim  SRAM file {path}  SRAM {sram}\n"),
        (None, None) => "card host  (parity on this CPU, no SRAM)\n".to_owned(),
    }
}

/// `bytes` in binary units, e.g. "64 KiB", "1.5 GiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    // 1023.95 and up would print as "1024.0" of this unit: show it as 1.0 of the next.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(65536), "64 KiB");
        assert_eq!(human_bytes(1_048_575), "1.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1_069_547_520), "1020 MiB");
    }
}

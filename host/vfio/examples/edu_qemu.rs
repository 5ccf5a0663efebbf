//! The VFIO layer against a real kernel's vfio-pci: run inside the QEMU guest that
//! `testbench/vfio-qemu/run` boots, on QEMU's `edu` device (1234:11e8).
//!
//! Usage: `edu_qemu BOUND OTHER_BOUND UNBOUND UNVIABLE` — four edu functions: the first
//! two bound to vfio-pci, each in its own IOMMU group; the third bound to nothing; the
//! fourth bound to vfio-pci in a group it shares with a device on a host driver. Prints one
//! `ok`/`FAIL` line per check and finally `AMF_VFIO_QEMU: PASS` or `AMF_VFIO_QEMU: FAIL`;
//! exits non-zero on failure.
//!
//! edu's registers (QEMU's hw/misc/edu.c): 0x00 id, 0x04 liveness (reads the inverse of
//! what was written), 0x24 interrupt status, 0x60 raise, 0x64 acknowledge, 0x80/0x88/
//! 0x90/0x98 DMA source, destination, count, command; its DMA buffer is at 0x40000.

use amf_vfio::{
    Bar, Device, DmaMapping, DmaMemory, InterruptKind, PciAddress, VfioCard, VfioCardOptions,
    VfioError, VfioPaths,
};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const EDU_ID: u32 = 0x0100_00ed;
const EDU_LIVENESS: u64 = 0x04;
const EDU_IRQ_STATUS: u64 = 0x24;
const EDU_IRQ_RAISE: u64 = 0x60;
const EDU_IRQ_ACK: u64 = 0x64;
const EDU_DMA_SOURCE: u64 = 0x80;
const EDU_DMA_TARGET: u64 = 0x88;
const EDU_DMA_COUNT: u64 = 0x90;
const EDU_DMA_COMMAND: u64 = 0x98;
const EDU_DMA_RUN: u64 = 1 << 0;
const EDU_DMA_TO_HOST: u64 = 1 << 1;
const EDU_DMA_IRQ: u64 = 1 << 2;
/// The interrupt status bit edu raises when a DMA with `EDU_DMA_IRQ` ends.
const EDU_DMA_IRQ_STATUS: u32 = 0x100;
const EDU_BUFFER: u64 = 0x4_0000;
const EDU_BAR_BYTES: u64 = 1 << 20;
/// edu masks DMA addresses to 28 bits: IOVAs stay below 256 MiB.
const IOVA_SOURCE: u64 = 0x10_0000;
const IOVA_TARGET: u64 = 0x20_0000;
/// Bytes moved per DMA: edu refuses a transfer that ends exactly at the end of its
/// 4 KiB buffer, so a little less.
const DMA_BYTES: usize = 4000;
/// edu delays every DMA by about 100 ms of virtual time; TCG can stretch that.
const DMA_TIMEOUT: Duration = Duration::from_secs(20);
const INTERRUPT_TIMEOUT_MS: u32 = 20_000;
/// A wait that must see nothing: any interrupt would have been raised long before.
const QUIET_WAIT_MS: u32 = 300;

type Check = Result<(), String>;

fn main() -> ExitCode {
    let addresses: Vec<String> = std::env::args().skip(1).collect();
    let [bound, other, unbound, unviable] = match parse_addresses(&addresses) {
        Ok(addresses) => addresses,
        Err(error) => {
            println!("FAIL - arguments: {error}");
            println!("AMF_VFIO_QEMU: FAIL");
            return ExitCode::FAILURE;
        }
    };
    let mut failures = 0;
    let mut report = |name: &str, outcome: Check| match outcome {
        Ok(()) => println!("ok - {name}"),
        Err(reason) => {
            failures += 1;
            println!("FAIL - {name}: {reason}");
        }
    };
    let paths = VfioPaths::default();
    match Device::open(&paths, bound) {
        Ok(device) => device_checks(&paths, &device, other, &mut report),
        Err(error) => report("open the bound edu", Err(error.to_string())),
    }
    report("a malformed address", malformed_address());
    report("a wrong PCI address", missing_device(&paths));
    report("a device not bound to vfio-pci", not_bound(&paths, unbound));
    report("a group that is not viable", not_viable(&paths, unviable));
    report("the card backend refuses edu", card_refuses_edu(bound));
    if failures == 0 {
        println!("AMF_VFIO_QEMU: PASS");
        ExitCode::SUCCESS
    } else {
        println!("AMF_VFIO_QEMU: FAIL ({failures} checks failed)");
        ExitCode::FAILURE
    }
}

fn parse_addresses(arguments: &[String]) -> Result<[PciAddress; 4], String> {
    let parsed = arguments
        .iter()
        .map(|text| {
            text.parse::<PciAddress>()
                .map_err(|error| error.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    parsed
        .try_into()
        .map_err(|_| "expected four PCI addresses: BOUND OTHER_BOUND UNBOUND UNVIABLE".to_owned())
}

/// Everything done with the bound edu open.
fn device_checks(
    paths: &VfioPaths,
    device: &Device,
    other: PciAddress,
    report: &mut impl FnMut(&str, Check),
) {
    println!(
        "# edu {} in IOMMU group {}, IOMMU page {} bytes, reset {}",
        device.address(),
        device.iommu_group(),
        device.container().page_bytes(),
        if device.can_reset() {
            "offered"
        } else {
            "not offered"
        }
    );
    report("configuration space ids", config_ids(device));
    let bar = match device.map_bar(0) {
        Ok(bar) => bar,
        Err(error) => return report("map BAR0", Err(error.to_string())),
    };
    report("BAR0 id register by mmap", id_register(&bar));
    report("BAR0 liveness register by mmap", liveness(&bar));
    report("a BAR access out of range", bar_out_of_range(&bar));
    report("a misaligned BAR access", bar_misaligned(&bar));
    report(
        "DMA both ways through the IOMMU",
        dma_round_trip(device, &bar),
    );
    report("a DMA map of unaligned memory", dma_unaligned(device));
    report(
        "an MSI through the eventfd",
        interrupt(device, &bar, InterruptKind::Msi),
    );
    report(
        "an INTx through the eventfd",
        interrupt(device, &bar, InterruptKind::Intx),
    );
    report("the group is busy while open", group_busy(paths, device));
    report("a device in another group", other_group(device, other));
    report("reset", reset(device, &bar));
}

fn expect(condition: bool, message: impl FnOnce() -> String) -> Check {
    if condition { Ok(()) } else { Err(message()) }
}

fn text(error: VfioError) -> String {
    error.to_string()
}

/// `outcome` must be an error `matches` accepts, naming `address`.
fn expect_error<T>(
    outcome: Result<T, VfioError>,
    address: Option<PciAddress>,
    matches: impl FnOnce(&VfioError) -> bool,
) -> Check {
    let error = match outcome {
        Ok(_) => return Err("succeeded; an error was expected".to_owned()),
        Err(error) => error,
    };
    println!("#   error: {error}");
    expect(matches(&error), || format!("wrong error: {error:?}"))?;
    match address {
        Some(address) => expect(error.to_string().contains(&address.to_string()), || {
            format!("the error does not name {address}: {error}")
        }),
        None => Ok(()),
    }
}

fn config_ids(device: &Device) -> Check {
    let ids = device.ids().map_err(text)?;
    expect(ids == (0x1234, 0x11e8), || format!("ids {ids:04x?}"))
}

fn id_register(bar: &Bar) -> Check {
    let id = bar.read32(0).map_err(text)?;
    expect(id == EDU_ID, || {
        format!("ID reads {id:#010x}, expected {EDU_ID:#010x}")
    })?;
    expect(bar.bytes() == EDU_BAR_BYTES, || {
        format!("BAR0 is {} bytes", bar.bytes())
    })
}

fn liveness(bar: &Bar) -> Check {
    for value in [0x1234_5678u32, 0, 0xdead_beef] {
        bar.write32(EDU_LIVENESS, value).map_err(text)?;
        let read = bar.read32(EDU_LIVENESS).map_err(text)?;
        expect(read == !value, || {
            format!("wrote {value:#x}, read {read:#x}")
        })?;
    }
    Ok(())
}

fn bar_out_of_range(bar: &Bar) -> Check {
    expect_error(bar.read32(EDU_BAR_BYTES), Some(bar.address()), |error| {
        matches!(error, VfioError::BarOutOfRange { .. })
    })?;
    expect_error(
        bar.write64(EDU_BAR_BYTES - 4, 0),
        Some(bar.address()),
        |error| {
            matches!(
                error,
                VfioError::BarMisaligned { .. } | VfioError::BarOutOfRange { .. }
            )
        },
    )
}

fn bar_misaligned(bar: &Bar) -> Check {
    expect_error(bar.read32(EDU_LIVENESS + 1), Some(bar.address()), |error| {
        matches!(error, VfioError::BarMisaligned { .. })
    })
}

fn map(device: &Device, iova: u64) -> Result<DmaMapping, String> {
    let container = device.container();
    let memory = DmaMemory::allocate(container.page_bytes(), container.page_bytes())
        .map_err(|error| format!("allocating DMA memory: {error}"))?;
    container.map_dma(memory, iova).map_err(text)
}

/// Host memory -> edu buffer -> other host memory, the second leg signalling completion
/// by MSI through the eventfd; the bytes must arrive unchanged.
fn dma_round_trip(device: &Device, bar: &Bar) -> Check {
    device.enable_bus_master().map_err(text)?;
    let source = map(device, IOVA_SOURCE)?;
    let target = map(device, IOVA_TARGET)?;
    let pattern: Vec<u8> = (0..DMA_BYTES).map(|i| (i * 7 + 3) as u8).collect();
    source.write(0, &pattern).map_err(text)?;
    run_dma(bar, IOVA_SOURCE, EDU_BUFFER, 0)?;
    let mut interrupt = device.enable_interrupt(InterruptKind::Msi).map_err(text)?;
    run_dma(bar, EDU_BUFFER, IOVA_TARGET, EDU_DMA_TO_HOST | EDU_DMA_IRQ)?;
    let fired = interrupt.wait(INTERRUPT_TIMEOUT_MS).map_err(text)?;
    expect(fired > 0, || "no MSI for the DMA completion".to_owned())?;
    let status = bar.read32(EDU_IRQ_STATUS).map_err(text)?;
    expect(status & EDU_DMA_IRQ_STATUS != 0, || {
        format!("interrupt status {status:#x} lacks the DMA bit")
    })?;
    bar.write32(EDU_IRQ_ACK, status).map_err(text)?;
    interrupt.disable().map_err(text)?;
    let mut arrived = vec![0u8; DMA_BYTES];
    target.read(0, &mut arrived).map_err(text)?;
    let differing = arrived.iter().zip(&pattern).filter(|(a, b)| a != b).count();
    expect(differing == 0, || {
        format!("{differing} of {DMA_BYTES} bytes differ after DMA")
    })?;
    source.unmap().map_err(text)?;
    target.unmap().map_err(text)
}

/// Starts one edu DMA of `DMA_BYTES` and waits for its command register to clear.
fn run_dma(bar: &Bar, from: u64, to: u64, flags: u64) -> Check {
    bar.write64(EDU_DMA_SOURCE, from).map_err(text)?;
    bar.write64(EDU_DMA_TARGET, to).map_err(text)?;
    bar.write64(EDU_DMA_COUNT, DMA_BYTES as u64).map_err(text)?;
    bar.write64(EDU_DMA_COMMAND, EDU_DMA_RUN | flags)
        .map_err(text)?;
    let deadline = Instant::now() + DMA_TIMEOUT;
    while bar.read64(EDU_DMA_COMMAND).map_err(text)? & EDU_DMA_RUN != 0 {
        if Instant::now() > deadline {
            return Err(format!("DMA {from:#x} -> {to:#x} did not finish"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn dma_unaligned(device: &Device) -> Check {
    let container = device.container();
    let short = memmap2::MmapOptions::new()
        .len(100)
        .map_anon()
        .map_err(|error| error.to_string())?;
    let outcome = container.map_dma(DmaMemory::from_mmap(short), IOVA_SOURCE);
    expect_error(outcome, Some(device.address()), |error| {
        matches!(error, VfioError::DmaMisaligned { what: "length", .. })
    })?;
    let memory = DmaMemory::allocate(4096, container.page_bytes()).map_err(|e| e.to_string())?;
    let outcome = container.map_dma(memory, IOVA_SOURCE + 0x800);
    expect_error(outcome, Some(device.address()), |error| {
        matches!(error, VfioError::DmaMisaligned { what: "IOVA", .. })
    })
}

/// edu raises the interrupt on a write to its raise register; the eventfd must see it,
/// and after the acknowledgement a second wait must see nothing.
fn interrupt(device: &Device, bar: &Bar, kind: InterruptKind) -> Check {
    let mut interrupt = device.enable_interrupt(kind).map_err(text)?;
    bar.write32(EDU_IRQ_RAISE, 1).map_err(text)?;
    let fired = interrupt.wait(INTERRUPT_TIMEOUT_MS).map_err(text)?;
    expect(fired > 0, || format!("no {} arrived", kind.name()))?;
    bar.write32(EDU_IRQ_ACK, 1).map_err(text)?;
    let again = interrupt.wait(QUIET_WAIT_MS).map_err(text)?;
    expect(again == 0, || {
        format!("{} fired again after the acknowledgement", kind.name())
    })?;
    interrupt.disable().map_err(text)
}

fn group_busy(paths: &VfioPaths, device: &Device) -> Check {
    expect_error(
        Device::open(paths, device.address()),
        Some(device.address()),
        |error| matches!(error, VfioError::GroupBusy { .. }),
    )
}

fn other_group(device: &Device, other: PciAddress) -> Check {
    expect_error(
        Device::open_in(device.group(), other),
        Some(other),
        |error| matches!(error, VfioError::DeviceNotInGroup { group, .. } if *group == device.iommu_group()),
    )
}

/// With a reset offered it must work and leave the device usable; without, it must be
/// the typed refusal.
fn reset(device: &Device, bar: &Bar) -> Check {
    if !device.can_reset() {
        return expect_error(device.reset(), Some(device.address()), |error| {
            matches!(error, VfioError::ResetUnsupported { .. })
        });
    }
    device.reset().map_err(text)?;
    id_register(bar)?;
    liveness(bar)
}

fn malformed_address() -> Check {
    let outcome = "0000:zz:00.0"
        .parse::<PciAddress>()
        .map_err(VfioError::from);
    expect_error(outcome, None, |error| {
        matches!(error, VfioError::BadAddress(_))
    })
}

fn missing_device(paths: &VfioPaths) -> Check {
    let nowhere: PciAddress = "0000:7e:1f.7".parse().map_err(|e| format!("{e}"))?;
    expect_error(Device::open(paths, nowhere), Some(nowhere), |error| {
        matches!(error, VfioError::NoSuchDevice { .. })
    })
}

fn not_bound(paths: &VfioPaths, unbound: PciAddress) -> Check {
    expect_error(Device::open(paths, unbound), Some(unbound), |error| {
        matches!(error, VfioError::NotBoundToVfio { driver: None, .. })
    })
}

/// The group also holds a serial card bound to its host driver: VFIO must refuse it, and
/// the error must say which device spoils it.
fn not_viable(paths: &VfioPaths, unviable: PciAddress) -> Check {
    expect_error(Device::open(paths, unviable), Some(unviable), |error| {
        matches!(error, VfioError::GroupNotViable { others, .. }
            if others.iter().any(|other| other.contains("serial")))
    })
}

fn card_refuses_edu(edu: PciAddress) -> Check {
    let options = VfioCardOptions::default();
    expect_error(VfioCard::open(&options, edu), Some(edu), |error| {
        matches!(
            error,
            VfioError::WrongDevice {
                vendor: 0x1234,
                device: 0x11e8,
                ..
            }
        )
    })?;
    expect_error(VfioCard::probe(&options.paths, edu), Some(edu), |error| {
        matches!(error, VfioError::WrongDevice { .. })
    })
}

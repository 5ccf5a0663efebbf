//! The `amf` command line: parsing, dispatch, one-line errors and exit codes.
//!
//! Exit codes: 0 success; 1 `scrub` found mismatches; 2 any error (including usage errors,
//! as clap reports them).

use crate::array::{Array, member_paths};
use crate::control::{self, ControlError, Request};
use crate::create::{CreateSpec, Targets, create};
use crate::tasks::{TaskKind, TaskState};
use crate::volume::{CardSpec, Engine};
use crate::{bench, online, scrub, status};
use amf_parity::HostParity;
use amf_raid::Level;
use clap::{Args, Parser, Subcommand, ValueEnum};
use shared_regs::limits::CHUNK_BYTES_DEFAULT;
use std::path::PathBuf;
use std::process::ExitCode;

/// The `amf` command line.
#[derive(Debug, Parser)]
#[command(
    name = "amf",
    version,
    about = "amflink: active-active shared RAID-5/6 across controllers",
    long_about = "amflink: active-active shared RAID-5/6 across controllers.\n\n\
        Members are files or block devices; a DIR argument stands for the member-NN.img files \
        inside it. Exit codes: 0 success, 1 scrub found mismatches, 2 error.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an array: write member superblocks (and member files under DIR).
    Create(CreateArgs),
    /// Show an array's level, geometry, members and their states.
    Status(StatusArgs),
    /// Check (and with --repair, fix) every stripe's parity: through the running amf serve
    /// when one serves the members, else offline.
    Scrub(ScrubArgs),
    /// Rebuild a failed member onto a replacement, through the running amf serve.
    Rebuild(RebuildArgs),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Serve the array's volume over NBD (replaying unfinished writes first).
    Serve(ServeArgs),
    /// Create (if absent) a RAID-6 of six 1 GiB files under ./amf-data and serve it.
    Up(UpArgs),
    /// Run the deterministic simulator of several AMFs over seeds (exit 1 on a failure).
    Sim(crate::simulate::SimArgs),
    /// Run the software fabric that links the AMFs' cards (ordered broadcast, remote SRAM
    /// writes, membership).
    Fabric(crate::fabric_cmd::FabricArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to serve NBD on (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR", default_value = crate::serve::NBD_ADDRESS_DEFAULT)]
    nbd: String,
    /// Parity engine and intent journal: "sim:PATH" (a sim card whose SRAM is PATH; default
    /// card.sram beside the members), "vfio:DDDD:BB:DD.F" (a card bound to vfio-pci; see
    /// docs/VFIO.md), "host" (parity on the CPU, intents in intent.journal beside the
    /// members) or "rtl" (parity on the Verilated card, intents in intent.journal; needs an
    /// amf built with `--features rtl`).
    #[arg(long, value_name = "SPEC")]
    card: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9109).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Join a cluster as this AMF (fabric port 0..7): the coherency protocol runs with the
    /// other AMFs on --fabric; the card is a sim card (default card-N.sram beside the
    /// members) whose fabric port joins the fabric.
    #[arg(long, value_name = "N", requires = "fabric", value_parser = clap::value_parser!(u8).range(0..8))]
    id: Option<u8>,
    /// The fabric the cluster's cards share (`amf fabric --listen`): tcp:HOST:PORT,
    /// HOST:PORT or unix:PATH.
    #[arg(long, value_name = "ADDR", requires = "id")]
    fabric: Option<amf_fabric::Address>,
    /// Most bytes of blocks a cluster AMF caches (e.g. 1G); past it, the stripes cached
    /// longest ago drop their blocks (reads then ask the peers, then the members).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes, requires = "id",
          default_value_t = crate::active::CACHE_BYTES_DEFAULT)]
    cache_size: u64,
    /// How a cluster AMF's member I/O meets this host's page cache: "direct" (O_DIRECT,
    /// for members that AMFs on other hosts share: a shared LUN, multipath) or
    /// "page-cache" (every AMF on this host's kernel, as under `amf up`).
    #[arg(long, value_name = "MODE", requires = "id", default_value = "direct")]
    member_io: MemberIo,
    #[command(flatten)]
    control: ControlArgs,
    #[command(flatten)]
    members: MembersArgs,
}

/// `--member-io`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum MemberIo {
    Direct,
    PageCache,
}

impl From<MemberIo> for crate::array::MemberCaching {
    fn from(mode: MemberIo) -> Self {
        match mode {
            MemberIo::Direct => Self::Direct,
            MemberIo::PageCache => Self::PageCache,
        }
    }
}

#[derive(Debug, Args)]
struct ControlArgs {
    /// The control socket of amf serve (default: amf.control beside the members; a
    /// cluster AMF's is amf-N.control, and rebuild and scrub find a running one).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

impl ControlArgs {
    fn socket(&self, members: &[PathBuf]) -> PathBuf {
        crate::serve::control_path(members, self.control.as_ref())
    }

    /// Where a job on `members` goes: `--control`, else the `amf serve` answering beside
    /// them, else the first running cluster AMF's socket (any AMF runs a job for the
    /// whole cluster; `--control DIR/amf-N.control` picks one).
    fn job_socket(&self, members: &[PathBuf]) -> PathBuf {
        let standalone = self.socket(members);
        if self.control.is_some() || control::call(&standalone, &Request::Status {}).is_ok() {
            return standalone;
        }
        crate::serve_cluster::running_amfs(members)
            .into_iter()
            .find_map(|amf| amf.control)
            .unwrap_or(standalone)
    }
}

#[derive(Debug, Args)]
struct RebuildArgs {
    /// Index of the failed (or missing) member to rebuild.
    #[arg(long, value_name = "K")]
    member: u32,
    /// File or block device that takes its place (a missing file is created; a shorter
    /// regular file is grown to the member size).
    #[arg(long, value_name = "FILE")]
    replacement: PathBuf,
    /// Most bytes written to the replacement per second (e.g. 100M); default unlimited.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    max_rate: Option<u64>,
    /// Start the rebuild and return; follow it with amf status.
    #[arg(long)]
    no_wait: bool,
    /// Print the finished job as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    control: ControlArgs,
    #[command(flatten)]
    members: MembersArgs,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Directory of the members (created with the array if it holds none).
    #[arg(long, value_name = "DIR", default_value = crate::up::UP_DIRECTORY_DEFAULT)]
    dir: PathBuf,
    /// Address to serve NBD on.
    #[arg(long, value_name = "ADDR", default_value = crate::serve::NBD_ADDRESS_DEFAULT)]
    nbd: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LevelArg {
    #[value(name = "5")]
    Raid5,
    #[value(name = "6")]
    Raid6,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// RAID level.
    #[arg(long, value_enum)]
    level: LevelArg,
    /// Number of members (RAID-5: 3..=32, RAID-6: 4..=32).
    #[arg(long)]
    members: u32,
    /// Chunk size: a power of two from 4K to 1M (suffixes K, M, G; binary).
    #[arg(long, default_value = "64K", value_parser = parse_bytes)]
    chunk: u64,
    /// Size of each member (as mdadm's --size, per device), e.g. 1G; required for new files.
    #[arg(long, value_parser = parse_bytes)]
    size: Option<u64>,
    /// Overwrite members that already belong to an array.
    #[arg(long)]
    force: bool,
    /// A directory (member-NN.img files are made inside it), or one file or block device
    /// per member, in member order.
    #[arg(required = true, value_name = "DIR|FILE")]
    targets: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct MembersArgs {
    /// A directory holding member-NN.img files, or the member files/devices themselves.
    #[arg(required = true, value_name = "DIR|FILE")]
    members: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Print JSON (stable; documented in docs/FORMAT.md).
    #[arg(long)]
    json: bool,
    /// Also report a card: "vfio:DDDD:BB:DD.F" (PCI address, IOMMU group, identity and
    /// versions, read without resetting it), "sim:PATH" or "host".
    #[arg(long, value_name = "SPEC")]
    card: Option<String>,
    #[command(flatten)]
    control: ControlArgs,
    /// A directory holding member-NN.img files, or the member files/devices themselves
    /// (optional with --card).
    #[arg(required_unless_present = "card", value_name = "DIR|FILE")]
    members: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct ScrubArgs {
    /// Rewrite mismatching parity from the data.
    #[arg(long)]
    repair: bool,
    /// Offline only: where parity is computed: "host" (this CPU, the default), "sim:PATH"
    /// (a sim card whose SRAM is the file PATH, created if missing), "vfio:DDDD:BB:DD.F" (a
    /// card bound to vfio-pci) or "rtl" (the Verilated card; needs an amf built with
    /// `--features rtl`). Online, the running amf serve uses its own card.
    #[arg(long, value_name = "SPEC")]
    card: Option<String>,
    /// Online only: most bytes read from each member per second (e.g. 50M).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    max_rate: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    control: ControlArgs,
    #[command(flatten)]
    members: MembersArgs,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// P (8+1) and P+Q (8+2) parity throughput, ours and ISA-L's, in cache and in memory.
    Parity {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Bytes of distinct stripes cycled through for the out-of-cache rows.
        #[arg(long, default_value = "512M", value_parser = parse_bytes)]
        memory: u64,
    },
    /// `amf serve` (RAID-6 of 6 file members) beside `nbdkit file` under fio's nbd engine.
    Nbd {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Volume size (and nbdkit's file size), on one disk under $TMPDIR.
        #[arg(long, default_value = crate::bench_nbd::SIZE_DEFAULT, value_parser = parse_bytes)]
        size: u64,
        /// Seconds of each workload on each server.
        #[arg(long, default_value_t = crate::bench_nbd::SECONDS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
    /// 4 KiB random writes through one AMF, then two AMFs on disjoint and on shared ranges
    /// (fabric and AMFs as processes, fio's nbd engine): IOPS, latency, fabric frames/write.
    Cluster {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Volume size, on one disk under $TMPDIR.
        #[arg(long, default_value = crate::bench_cluster::SIZE_DEFAULT, value_parser = parse_bytes)]
        size: u64,
        /// Seconds of each case.
        #[arg(long, default_value_t = crate::bench_cluster::SECONDS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
}

/// A failure the CLI prints as one line.
type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// Runs the CLI and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("amf: error: {}", one_line(error.as_ref()));
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("AMF_LOG").unwrap_or_else(|_| "warn".into());
    // Colours only for a terminal: a log file (amf up's, a test's) stays plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Writes a report to standard output. A reader that went away (`amf status | head`)
/// ends the output quietly instead of panicking as `print!` would.
pub(crate) fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// The error and its causes, joined on one line.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Create(args) => run_create(args),
        Command::Status(args) => run_status(args),
        Command::Scrub(args) => run_scrub(args),
        Command::Rebuild(args) => run_rebuild(args),
        Command::Bench(BenchCommand::Parity { json, memory }) => run_bench_parity(json, memory),
        Command::Bench(BenchCommand::Nbd {
            json,
            size,
            seconds,
        }) => run_bench_nbd(json, size, seconds),
        Command::Bench(BenchCommand::Cluster {
            json,
            size,
            seconds,
        }) => run_bench_cluster(json, size, seconds),
        Command::Serve(args) => run_serve(args),
        Command::Up(args) => run_up(args),
        Command::Sim(args) => Ok(crate::simulate::run(&args)),
        Command::Fabric(args) => crate::fabric_cmd::run(&args),
    }
}

fn run_serve(args: ServeArgs) -> CliResult {
    let card = args.card.as_deref().map(CardSpec::parse).transpose()?;
    if let (Some(port), Some(fabric)) = (args.id, args.fabric.clone()) {
        return run_serve_cluster(args, port, fabric, card);
    }
    let config = crate::serve::ServeConfig {
        members: args.members.members,
        address: args.nbd,
        card,
        status_line: false,
        control: args.control.control,
        metrics: args.metrics,
    };
    crate::serve::run(&config, |address| {
        use std::io::Write;
        println!("amf serve: nbd://{address}");
        let _ = std::io::stdout().flush();
    })
    .map_err(|error| -> Box<dyn std::error::Error> { error })?;
    Ok(ExitCode::SUCCESS)
}

fn run_serve_cluster(
    args: ServeArgs,
    port: u8,
    fabric: amf_fabric::Address,
    card: Option<CardSpec>,
) -> CliResult {
    let sram_path = match card {
        None => None,
        Some(CardSpec::Sim(path)) => Some(path),
        Some(_) => {
            return Err(
                "--id: a cluster AMF needs a sim card (--card sim:PATH), whose \
                 fabric port joins the fabric"
                    .into(),
            );
        }
    };
    let config = crate::serve_cluster::ClusterServeConfig {
        members: args.members.members,
        address: args.nbd,
        port,
        fabric,
        sram_path,
        metrics: args.metrics,
        cache_bytes_max: args.cache_size,
        control: args.control.control,
        caching: args.member_io.into(),
    };
    crate::serve_cluster::run(&config, |address| {
        use std::io::Write;
        println!("amf serve: AMF {port}: nbd://{address}");
        let _ = std::io::stdout().flush();
    })
    .map_err(|error| -> Box<dyn std::error::Error> { error })?;
    Ok(ExitCode::SUCCESS)
}

fn run_up(args: UpArgs) -> CliResult {
    let config = crate::up::UpConfig {
        directory: args.dir,
        address: args.nbd,
    };
    crate::up::run(&config).map_err(|error| -> Box<dyn std::error::Error> { error })?;
    Ok(ExitCode::SUCCESS)
}

fn run_create(args: CreateArgs) -> CliResult {
    let level = match args.level {
        LevelArg::Raid5 => Level::Raid5,
        LevelArg::Raid6 => Level::Raid6,
    };
    let chunk_bytes =
        u32::try_from(args.chunk).map_err(|_| format!("--chunk {} is too large", args.chunk))?;
    let targets = match &args.targets[..] {
        [single] if single.is_dir() || (!single.exists() && args.members > 1) => {
            Targets::Directory(single.clone())
        }
        devices => Targets::Devices(devices.to_vec()),
    };
    let spec = CreateSpec {
        level,
        members: args.members,
        chunk_bytes,
        member_bytes: args.size,
        force: args.force,
        array_uuid: *uuid::Uuid::new_v4().as_bytes(),
        created_unix_seconds: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let created = create(&spec, &targets)?;
    if created.needs_parity_sync {
        let array = Array::open(&created.paths, true)?;
        // A fresh array's parity sync runs on the host: no card is named at create time.
        let progress = scrub::progress_bar(&array);
        scrub::run(&array, scrub::Mode::Repair, &mut HostParity, progress)?;
    }
    let volume = status::human_bytes(created.geometry.volume_bytes());
    println!(
        "created RAID-{} of {} members, chunk {}, volume {volume}:",
        level_digit(level),
        spec.members,
        status::human_bytes(chunk_bytes.into())
    );
    for path in &created.paths {
        println!("  {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn level_digit(level: Level) -> u8 {
    match level {
        Level::Raid5 => 5,
        Level::Raid6 => 6,
    }
}

fn open_array(members: &MembersArgs, writable: bool) -> Result<Array, Box<dyn std::error::Error>> {
    let paths = member_paths(&members.members)?;
    Ok(Array::open(&paths, writable)?)
}

fn run_status(args: StatusArgs) -> CliResult {
    let card = match args.card.as_deref().map(CardSpec::parse).transpose()? {
        Some(spec) => Some(status::card_report(&spec)?),
        None => None,
    };
    let array = if args.members.is_empty() {
        None
    } else {
        let members = MembersArgs {
            members: args.members,
        };
        let array = open_array(&members, false)?;
        let serving = serving(&args.control.socket(&members.members))?;
        let mut report = status::report(&array, serving);
        report.cluster = crate::serve_cluster::read_reports(&members.members);
        Some(report)
    };
    if args.json {
        let mut json = match &array {
            Some(report) => serde_json::to_value(report)?,
            None => serde_json::Value::Object(Default::default()),
        };
        if let Some(card) = &card {
            json["card"] = serde_json::to_value(card)?;
        }
        emit(&format!("{}\n", serde_json::to_string_pretty(&json)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = card.as_ref().map(status::render_card).unwrap_or_default();
    if let Some(report) = &array {
        text.push_str(&status::render(report));
    }
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The `amf serve` answering on `socket`, if one does.
fn serving(socket: &std::path::Path) -> Result<Option<control::ServeStatus>, ControlError> {
    match control::call(socket, &Request::Status {}) {
        Ok(status) => Ok(Some(status)),
        Err(ControlError::NotServing { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

fn run_scrub(args: ScrubArgs) -> CliResult {
    let socket = args.control.job_socket(&args.members.members);
    match control::call(&socket, &Request::Status {}) {
        Err(ControlError::NotServing { .. }) => return run_scrub_offline(args),
        Err(error) => return Err(error.into()),
        Ok(_) if args.card.is_some() => {
            return Err(format!(
                "--card applies to an offline scrub: the amf serve answering on {} computes parity on its own card",
                socket.display()
            )
            .into());
        }
        Ok(_) => {}
    }
    let request = Request::Scrub {
        repair: args.repair,
        max_rate_bytes_per_second: args.max_rate,
    };
    let task = online::start_and_follow(&socket, &request, TaskKind::Scrub, args.json)?;
    let report = task
        .scrub
        .clone()
        .ok_or_else(|| online::summary(&task).trim_end().to_owned())?;
    print_scrub(&report, args.json)
}

fn run_scrub_offline(args: ScrubArgs) -> CliResult {
    if args.max_rate.is_some() {
        return Err("--max-rate applies to a scrub through a running amf serve".into());
    }
    if let Some(amf) = crate::serve_cluster::running_amfs(&args.members.members).first() {
        // Writes by the cluster would race a repair, and make a check report stripes
        // half-written as mismatches.
        return Err(format!(
            "AMF {} (pid {}, nbd://{}) serves these members but its control socket does \
             not answer: stop the cluster before an offline scrub",
            amf.cluster.port, amf.pid, amf.nbd
        )
        .into());
    }
    let card = CardSpec::parse(args.card.as_deref().unwrap_or("host"))?;
    let array = open_array(&args.members, args.repair)?;
    array.check_available()?;
    let mut engine = Engine::open(&card)?;
    let mode = if args.repair {
        scrub::Mode::Repair
    } else {
        scrub::Mode::Check
    };
    let progress = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        scrub::progress_bar(&array)
    };
    let scrubbed = scrub::run(&array, mode, engine.as_dyn(), progress);
    // Stop the card even when the scrub failed; the scrub's error is the news.
    let closed = engine.close();
    let report = scrubbed?;
    closed.map_err(|error| -> Box<dyn std::error::Error> { error })?;
    print_scrub(&report, args.json)
}

fn print_scrub(report: &scrub::ScrubReport, json: bool) -> CliResult {
    if json {
        emit(&format!("{}\n", serde_json::to_string_pretty(report)?))?;
    } else {
        emit(&scrub::render(report))?;
    }
    let clean = report.mismatches.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_rebuild(args: RebuildArgs) -> CliResult {
    let socket = args.control.job_socket(&args.members.members);
    warn_if_not_found_at_restart(&args.members.members, &args.replacement);
    let request = Request::Rebuild {
        member: args.member,
        replacement: std::path::absolute(&args.replacement)?,
        max_rate_bytes_per_second: args.max_rate,
    };
    if args.no_wait {
        control::call(&socket, &request)?;
        emit(&format!(
            "rebuild of member {} started; amf status shows its progress\n",
            args.member
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let task = online::start_and_follow(&socket, &request, TaskKind::Rebuild, args.json)?;
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&task)?))?;
    } else {
        emit(&online::summary(&task))?;
    }
    Ok(match task.state {
        TaskState::Done => ExitCode::SUCCESS,
        _ => ExitCode::from(2),
    })
}

/// A replacement outside the DIR arguments' `member-NN.img` files is not found again when
/// `amf serve DIR` restarts: say so before it matters.
fn warn_if_not_found_at_restart(arguments: &[PathBuf], replacement: &std::path::Path) {
    let named_directly = arguments.iter().any(|argument| argument == replacement);
    let found_in_directory = arguments.iter().any(|argument| {
        argument.is_dir()
            && replacement.parent() == Some(argument.as_path())
            && replacement
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(crate::array::is_member_file_name)
    });
    if !named_directly && !found_in_directory {
        eprintln!(
            "amf rebuild: note: {} is not one of the member files amf serve finds in {}; name it on amf serve's command line after a restart",
            replacement.display(),
            arguments
                .iter()
                .map(|argument| argument.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

fn run_bench_parity(json: bool, memory_bytes: u64) -> CliResult {
    let options = bench::ParityBenchOptions {
        memory_bytes,
        ..Default::default()
    };
    let report = bench::run_parity(&options);
    if json {
        emit(&format!("{}\n", serde_json::to_string(&report)?))?;
    } else {
        emit(&bench::render_table(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_bench_nbd(json: bool, size_bytes: u64, seconds: u64) -> CliResult {
    let options = crate::bench_nbd::NbdBenchOptions {
        size_bytes,
        seconds,
    };
    let report = crate::bench_nbd::run(&options, |step| eprintln!("amf bench nbd: {step}"))
        .map_err(|error| error as Box<dyn std::error::Error>)?;
    if json {
        emit(&format!("{}\n", serde_json::to_string(&report)?))?;
    } else {
        emit(&crate::bench_nbd::render_table(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_bench_cluster(json: bool, size_bytes: u64, seconds: u64) -> CliResult {
    let options = crate::bench_cluster::ClusterBenchOptions {
        size_bytes,
        seconds,
    };
    let report = crate::bench_cluster::run(&options, |step| eprintln!("amf bench cluster: {step}"))
        .map_err(|error| error as Box<dyn std::error::Error>)?;
    if json {
        emit(&format!("{}\n", serde_json::to_string(&report)?))?;
    } else {
        emit(&crate::bench_cluster::render_table(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses a byte count: digits with an optional binary suffix K, M, G, T (also KiB, k,
/// KB: all powers of 1024, as mdadm reads them).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 64K, 256M, 1G)"))?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "'{text}': unknown size suffix '{suffix}' (use K, M, G or T)"
            ));
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

const _: () = assert!(
    CHUNK_BYTES_DEFAULT == 64 * 1024,
    "the --chunk default above says 64K"
);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("64K"), Ok(65536));
        assert_eq!(parse_bytes("256M"), Ok(256 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("1gib"), Ok(1 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("K").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}

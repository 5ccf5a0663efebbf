//! `amf fabric`: the software fabric, playing the cards' arbiter for AMFs whose cards have
//! no fabric between them (`amf_fabric`, `docs/PROTOCOL.md` "Software fabric").
//!
//! It prints `amf fabric: listening on ADDR` (the address ports connect to, a TCP port 0
//! resolved) once it takes connections, and runs until SIGTERM or Ctrl-C, when it refuses
//! every link (`ShuttingDown`) and exits 0. Refused and dropped links are logged at
//! `warn` (set `AMF_LOG=info` to see ports join and leave too).
//!
//! A port whose link ends without a `Leave` is fenced before it is announced down
//! (`--fence`, `docs/PROTOCOL.md` "Fencing"): by default its process is killed; with
//! `--fence command --fence-command CMD` an external agent does it. Failed fences are
//! logged at `error` and retried.
//!
//! With `--corosync GROUP` the fabric spans machines: one `amf fabric` per machine, each a
//! replica of the arbiter fed in the agreed order of corosync CPG group `GROUP`
//! (`amf_corosync`, `docs/PROTOCOL.md` "Fabric on corosync"); each machine's AMFs connect
//! to their own machine's fabric.

use amf_fabric::fence::COMMAND_TIMEOUT_MS_DEFAULT;
use amf_fabric::{Address, ArbiterConfig, FenceAgent, ServerConfig, server};
use clap::{Args, ValueEnum};
use std::process::ExitCode;

/// Default listening address.
pub const FABRIC_ADDRESS_DEFAULT: &str = "127.0.0.1:10900";

/// `amf fabric`'s arguments.
#[derive(Debug, Args)]
pub struct FabricArgs {
    /// Where ports connect: tcp:HOST:PORT, HOST:PORT (port 0: any free port, printed) or
    /// unix:PATH.
    #[arg(long, value_name = "ADDR", default_value = FABRIC_ADDRESS_DEFAULT)]
    listen: String,
    /// The array every port must serve (its uuid, as `amf status` prints it); by default
    /// the first port to join decides.
    #[arg(long, value_name = "UUID")]
    array: Option<uuid::Uuid>,
    /// How often the fabric beats and expects beats from each port.
    #[arg(long, value_name = "MS", default_value_t = amf_fabric::ArbiterConfig::default().heartbeat_interval_ms, value_parser = clap::value_parser!(u32).range(1..))]
    heartbeat_ms: u32,
    /// Beats a port may miss before it is declared down.
    #[arg(long, value_name = "N", default_value_t = amf_fabric::ArbiterConfig::default().heartbeat_misses_max, value_parser = clap::value_parser!(u32).range(1..))]
    heartbeat_misses: u32,
    /// How a port whose link died is fenced before the others are told: kill its process
    /// (found at connect; a peer whose process cannot be found is refused at join), or run
    /// --fence-command.
    #[arg(long, value_enum, default_value_t = FenceKind::Kill)]
    fence: FenceKind,
    /// The external fence agent (shell text), run as `CMD --port N --address A [--pid P]`;
    /// exit status 0 means fenced. Needs --fence command.
    #[arg(long, value_name = "CMD", required_if_eq("fence", "command"))]
    fence_command: Option<String>,
    /// How long one run of --fence-command may take before it is killed and retried.
    #[arg(long, value_name = "MS", default_value_t = COMMAND_TIMEOUT_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    fence_timeout_ms: u64,
    /// Span machines: replicate this fabric over corosync's CPG group GROUP (one `amf
    /// fabric --corosync GROUP` per machine, each machine's AMFs on its own).
    #[arg(long, value_name = "GROUP")]
    corosync: Option<String>,
    /// With --corosync: how long a machine that left the group (a partition's minority, a
    /// crash) takes at most to cut its AMFs off; the others wait this long before they
    /// take over its writes. Must exceed the time corosync takes to see the partition on
    /// the minority's side (its token timeout) plus an AMF's self-fence.
    #[arg(long, value_name = "MS", default_value_t = SELF_FENCE_MS_DEFAULT, requires = "corosync")]
    self_fence_ms: u64,
}

/// `--self-fence-ms`'s default: corosync's default token timeout (3 s) plus margin.
pub const SELF_FENCE_MS_DEFAULT: u64 = 5_000;

/// `--fence`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FenceKind {
    /// SIGKILL the port's process and wait until it is gone.
    Kill,
    /// Run --fence-command.
    Command,
}

impl FabricArgs {
    fn fence_agent(&self) -> Result<FenceAgent, String> {
        match (self.fence, &self.fence_command) {
            (FenceKind::Kill, None) => Ok(FenceAgent::Kill),
            (FenceKind::Kill, Some(_)) => {
                Err("--fence-command is only used with --fence command".into())
            }
            (FenceKind::Command, Some(command)) if !command.trim().is_empty() => {
                Ok(FenceAgent::Command {
                    command: command.clone(),
                    timeout_ms: self.fence_timeout_ms,
                })
            }
            (FenceKind::Command, _) => Err("--fence command needs a --fence-command CMD".into()),
        }
    }
}

/// Runs `amf fabric` until a signal.
pub fn run(args: &FabricArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let address: Address = args
        .listen
        .parse()
        .map_err(|error| format!("--listen: {error}"))?;
    let config = ServerConfig {
        arbiter: ArbiterConfig {
            array_uuid: args.array.map(|uuid| *uuid.as_bytes()),
            heartbeat_interval_ms: args.heartbeat_ms,
            heartbeat_misses_max: args.heartbeat_misses,
        },
        fence: args.fence_agent()?,
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = server::Listener::bind(&address).await?;
        // Watch the signals before printing the address: a SIGTERM right after start-up
        // is then a clean stop, not a kill.
        let shutdown = crate::serve::shutdown_signal()?;
        let bound = listener.local_address()?;
        tracing::info!(%bound, "fabric listening");
        crate::cli::emit(&format!("amf fabric: listening on {bound}\n"))?;
        let group = match &args.corosync {
            None => None,
            Some(name) => {
                let (sender, events) = tokio::sync::mpsc::channel(4096);
                let group = amf_corosync::start(name.clone(), sender)?;
                Some(server::GroupLink {
                    group: std::sync::Arc::new(group),
                    events,
                    self_fence_ms: args.self_fence_ms,
                })
            }
        };
        server::serve_ordered(listener, config, group, shutdown).await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

//! Three machines on one: three network namespaces on a bridge, each with its own
//! corosync (knet, aes256 with an authkey, votequorum), its own `amf fabric --corosync`
//! and one AMF, all on one RAID-6 of member files every namespace sees. Clients reach each
//! AMF over the bridge from the root namespace, as from another host.
//!
//! In order, on one cluster: writes through every AMF read back through every other; `kill
//! -9` of one node's AMF under writes; `kill -9` of one node's corosync; one node cut off
//! (`ip link set down`: a partition of one from two), which must stop serving while the
//! two go on, then heal and rejoin; 10% packet loss both ways on a link (nftables). No acknowledged
//! write is lost, every AMF reads every write back, and scrub finds 0 mismatches.
//!
//! Needs root, `ip`, `nft`, `corosync`, `unshare` (`.ci/run` installs them).

mod serve_support;

use serve_support::cluster::{acknowledged, must, spawn_writer};
use serve_support::{AMF, Pattern, create, patterns, scrub_mismatches};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODES: usize = 3;
const MIB: u64 = 1024 * 1024;
const MEMBER_MIB: u64 = 24;
/// RAID-6 of 5 members: three data chunks a stripe, after each member's 1 MiB superblock.
const VOLUME_BYTES: u64 = 3 * (MEMBER_MIB - 1) * MIB;
/// corosync's token timeout here; with three nodes a lost node is seen after about
/// token + 650 ms, and the new membership forms after consensus (1.2 x token) more.
const TOKEN_MS: u64 = 1_000;
/// The fabrics' self-fence bound: longer than the minority takes to see it lost quorum
/// (it runs the same timeouts) plus its AMF's fence.
const SELF_FENCE_MS: u64 = 3_000;
/// How long a node cut off may serve at most: its corosync sees the others gone and the
/// loss of quorum within token + consensus (~3.7 s here), then its fabric closes the AMF's
/// link at once. The documented bound, with margin for a loaded machine.
const CUT_OFF_WITHIN: Duration = Duration::from_secs(8);
const WAIT_MAX: Duration = Duration::from_secs(30);

fn run(program: &str, arguments: &[&str]) {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"));
    assert!(
        output.status.success(),
        "{program} {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The namespaces, their links and daemons; removed again on drop.
struct Nodes {
    root: tempfile::TempDir,
    dir: PathBuf,
    tag: String,
    corosyncs: Vec<Option<Child>>,
    fabrics: Vec<Option<Child>>,
    amfs: Vec<Option<Child>>,
}

impl Nodes {
    fn namespace(&self, node: usize) -> String {
        format!("{}n{node}", self.tag)
    }

    fn veth(&self, node: usize) -> String {
        format!("{}v{node}", self.tag)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn node_dir(&self, node: usize) -> PathBuf {
        self.root.path().join(format!("node{node}"))
    }

    fn address(node: usize) -> String {
        format!("10.79.0.{}", node + 1)
    }

    fn uri(&self, node: usize) -> String {
        format!("nbd://{}:10809", Self::address(node))
    }

    fn start() -> Nodes {
        let root = tempfile::tempdir().unwrap();
        let tag = format!("amf{}", std::process::id() % 100_000);
        let dir = root.path().join("array");
        create(&dir, "6", 5, &format!("{MEMBER_MIB}M"));
        let mut nodes = Nodes {
            root,
            dir,
            tag,
            corosyncs: (0..NODES).map(|_| None).collect(),
            fabrics: (0..NODES).map(|_| None).collect(),
            amfs: (0..NODES).map(|_| None).collect(),
        };
        nodes.wire();
        let authkey = nodes.root.path().join("authkey");
        std::fs::write(&authkey, rand_key()).unwrap();
        for node in 0..NODES {
            nodes.write_corosync_conf(node, &authkey);
            nodes.start_corosync(node);
        }
        nodes.await_quorate(&[0, 1, 2]);
        for node in 0..NODES {
            nodes.start_fabric(node);
        }
        for node in 0..NODES {
            nodes.start_amf(node);
        }
        nodes.await_live(&[0, 1, 2], NODES);
        nodes
    }

    /// A bridge in the root namespace (which gets .254, the clients' side), and a veth
    /// pair from it into each node's namespace.
    fn wire(&self) {
        let bridge = self.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        run("ip", &["addr", "add", "10.79.0.254/24", "dev", &bridge]);
        run("ip", &["link", "set", &bridge, "up"]);
        for node in 0..NODES {
            let (namespace, veth) = (self.namespace(node), self.veth(node));
            run("ip", &["netns", "add", &namespace]);
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                    &namespace,
                ],
            );
            run("ip", &["link", "set", &veth, "master", &bridge, "up"]);
            let address = format!("{}/24", Self::address(node));
            let inside = ["netns", "exec", &namespace, "ip"];
            run(
                "ip",
                &[&inside[..], &["addr", "add", &address, "dev", "eth0"]].concat(),
            );
            run(
                "ip",
                &[&inside[..], &["link", "set", "eth0", "up"]].concat(),
            );
            run("ip", &[&inside[..], &["link", "set", "lo", "up"]].concat());
        }
    }

    fn write_corosync_conf(&self, node: usize, authkey: &Path) {
        let node_dir = self.node_dir(node);
        std::fs::create_dir_all(node_dir.join("run")).unwrap();
        let nodelist: String = (0..NODES)
            .map(|other| {
                format!(
                    "  node {{\n    ring0_addr: {}\n    nodeid: {}\n  }}\n",
                    Self::address(other),
                    other + 1
                )
            })
            .collect();
        let conf = format!(
            "totem {{\n  version: 2\n  cluster_name: {tag}\n  transport: knet\n  \
             crypto_cipher: aes256\n  crypto_hash: sha256\n  keyfile: {key}\n  \
             token: {TOKEN_MS}\n}}\nnodelist {{\n{nodelist}}}\nquorum {{\n  \
             provider: corosync_votequorum\n}}\nlogging {{\n  to_stderr: yes\n  \
             to_syslog: no\n  timestamp: on\n}}\nsystem {{\n  state_dir: {state}\n  \
             allow_knet_handle_fallback: yes\n}}\n",
            tag = self.tag,
            key = authkey.display(),
            state = node_dir.display(),
        );
        std::fs::write(node_dir.join("corosync.conf"), conf).unwrap();
    }

    fn in_namespace(&self, node: usize) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(node)]);
        command
    }

    fn log_file(&self, node: usize, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_dir(node).join(name))
            .unwrap()
    }

    /// corosync in the node's namespace, with a /run of its own (it keeps its pid file
    /// there); `exec` all the way, so the child's pid is corosync's.
    fn start_corosync(&mut self, node: usize) {
        let node_dir = self.node_dir(node);
        let script = format!(
            "mount --bind {run} /run && exec corosync -f -c {conf}",
            run = node_dir.join("run").display(),
            conf = node_dir.join("corosync.conf").display()
        );
        let child = self
            .in_namespace(node)
            .args(["unshare", "--mount", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(self.log_file(node, "corosync.log"))
            .spawn()
            .expect("corosync starts");
        self.corosyncs[node] = Some(child);
    }

    fn start_fabric(&mut self, node: usize) {
        let socket = self.node_dir(node).join("fabric.sock");
        let listen = format!("unix:{}", socket.display());
        let self_fence = SELF_FENCE_MS.to_string();
        let mut child = self
            .in_namespace(node)
            .args([AMF, "fabric", "--listen", &listen, "--corosync", &self.tag])
            .args(["--self-fence-ms", &self_fence])
            .env("AMF_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(self.log_file(node, "fabric.log"))
            .spawn()
            .expect("amf fabric starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "amf fabric printed {line:?}");
        self.fabrics[node] = Some(child);
    }

    /// AMF `node` (its fabric port too), serving NBD on the node's address.
    fn start_amf(&mut self, node: usize) {
        let fabric = format!("unix:{}", self.node_dir(node).join("fabric.sock").display());
        let nbd = format!("{}:10809", Self::address(node));
        let id = node.to_string();
        let mut child = self
            .in_namespace(node)
            .args([
                AMF, "serve", "--nbd", &nbd, "--id", &id, "--fabric", &fabric,
            ])
            .arg(&self.dir)
            .env("AMF_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(self.log_file(node, "amf.log"))
            .spawn()
            .expect("amf serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.contains("nbd://"),
            "amf serve printed {line:?}; log:\n{}",
            self.log(node, "amf.log")
        );
        self.amfs[node] = Some(child);
    }

    fn log(&self, node: usize, name: &str) -> String {
        std::fs::read_to_string(self.node_dir(node).join(name)).unwrap_or_default()
    }

    fn logs(&self) -> String {
        (0..NODES)
            .flat_map(|node| {
                ["fabric.log", "amf.log"].map(|name| {
                    let text = self.log(node, name);
                    let tail: Vec<&str> = text.lines().rev().take(25).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    format!("--- node {node} {name}\n{}\n", tail.join("\n"))
                })
            })
            .collect()
    }

    fn kill9(slot: &mut Option<Child>) {
        if let Some(mut child) = slot.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn quorate(&self, node: usize) -> bool {
        self.in_namespace(node)
            .args(["corosync-quorumtool", "-s"])
            .output()
            .is_ok_and(|output| {
                String::from_utf8_lossy(&output.stdout).contains("Quorate:          Yes")
            })
    }

    fn await_quorate(&self, nodes: &[usize]) {
        let deadline = Instant::now() + WAIT_MAX;
        while !nodes.iter().all(|&node| self.quorate(node)) {
            assert!(Instant::now() < deadline, "corosync did not reach quorum");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn status(&self, node: usize) -> serde_json::Value {
        let path = self.dir.join(format!("amf-{node}.status.json"));
        std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Waits until each of `nodes` serves (no outage) with `live` ports live.
    fn await_live(&self, nodes: &[usize], live: usize) -> Duration {
        let started = Instant::now();
        for &node in nodes {
            loop {
                let status = &self.status(node)["cluster"];
                let ports = status["live_ports"].as_array().map_or(0, Vec::len);
                if status["outage"].is_null() && ports == live && status["down"].is_null() {
                    break;
                }
                assert!(
                    started.elapsed() < WAIT_MAX,
                    "AMF {node} did not serve with {live} live ports: {status}\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        started.elapsed()
    }

    /// Waits until AMF `node` shows an outage (it stopped serving); how long it took.
    fn await_outage(&self, node: usize, within: Duration) -> Duration {
        let started = Instant::now();
        while self.status(node)["cluster"]["outage"].is_null() {
            assert!(
                started.elapsed() < within,
                "AMF {node} still serves {within:?} after it was cut off\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }

    fn set_link(&self, node: usize, up: bool) {
        run(
            "ip",
            &[
                "link",
                "set",
                &self.veth(node),
                if up { "up" } else { "down" },
            ],
        );
    }

    /// Drops `percent` of the packets into and out of `node` at random (`None`: stops).
    fn drop_packets(&self, node: usize, percent: Option<u32>) {
        let namespace = self.namespace(node);
        let nft = |arguments: &[&str]| {
            run(
                "ip",
                &[&["netns", "exec", &namespace, "nft"][..], arguments].concat(),
            );
        };
        let Some(percent) = percent else {
            nft(&["delete", "table", "inet", "amfloss"]);
            return;
        };
        nft(&["add", "table", "inet", "amfloss"]);
        for hook in ["input", "output"] {
            let chain = format!("{{ type filter hook {hook} priority 0; }}");
            nft(&["add", "chain", "inet", "amfloss", hook, &chain]);
            let below = percent.to_string();
            let rule = ["numgen", "random", "mod", "100", "<", &below, "drop"];
            nft(&[&["add", "rule", "inet", "amfloss", hook][..], &rule[..]].concat());
        }
    }

    fn reads(all: &[Pattern]) -> Vec<String> {
        all.iter().map(Pattern::read).collect()
    }

    /// Starts writing `all` through `nodes` at once, each its share.
    fn start_writes<'a>(&self, nodes: &[usize], all: &'a [Pattern]) -> Vec<Writer<'a>> {
        let share = all.len().div_ceil(nodes.len());
        nodes
            .iter()
            .zip(all.chunks(share))
            .map(|(&node, writes)| Writer {
                node,
                writes,
                child: spawn_writer(&self.uri(node), writes),
            })
            .collect()
    }

    /// Every write of `writers` must be acknowledged.
    fn finish_writes(&self, writers: Vec<Writer>) {
        for Writer {
            node,
            writes,
            child,
        } in writers
        {
            let acked = acknowledged(child, writes);
            assert_eq!(
                acked.len(),
                writes.len(),
                "every write through AMF {node} is acknowledged\n{}",
                self.logs()
            );
        }
    }

    fn write_through(&self, nodes: &[usize], all: &[Pattern]) {
        let writers = self.start_writes(nodes, all);
        self.finish_writes(writers);
    }
}

/// A qemu-io writing its share through one AMF.
struct Writer<'a> {
    node: usize,
    writes: &'a [Pattern],
    child: Child,
}

fn rand_key() -> Vec<u8> {
    use rand::RngCore;
    let mut key = vec![0u8; 256];
    rand::thread_rng().fill_bytes(&mut key);
    key
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for slot in self
            .amfs
            .iter_mut()
            .chain(&mut self.fabrics)
            .chain(&mut self.corosyncs)
        {
            Nodes::kill9(slot);
        }
        for node in 0..NODES {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.namespace(node)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge()])
            .status();
    }
}

#[test]
fn three_machines_on_corosync_ride_through_crashes_partitions_and_loss() {
    let mut nodes = Nodes::start();

    // Every AMF writes its share; every AMF reads all of it back.
    let all = patterns(VOLUME_BYTES, 4 * MIB, 0x21);
    nodes.write_through(&[0, 1, 2], &all);
    for node in 0..NODES {
        must(&nodes.uri(node), &Nodes::reads(&all));
    }

    // kill -9 of node 1's AMF under writes through the other two: its fabric fences it
    // (the process is gone) and the others finish its writes and go on.
    let all = patterns(VOLUME_BYTES, 3 * MIB, 0x41);
    let writers = nodes.start_writes(&[0, 2], &all);
    std::thread::sleep(Duration::from_millis(200));
    Nodes::kill9(&mut nodes.amfs[1]);
    nodes.finish_writes(writers);
    nodes.await_live(&[0, 2], 2);
    nodes.start_amf(1);
    let back = nodes.await_live(&[0, 1, 2], 3);
    must(&nodes.uri(1), &Nodes::reads(&all));
    eprintln!("figures: AMF 1 killed and restarted: all three serve again {back:?} after");

    // kill -9 of node 2's corosync under writes through the other two: its fabric is out
    // of the group and cuts its AMF off; the others wait the self-fence bound and go on.
    let all = patterns(VOLUME_BYTES, 3 * MIB, 0x61);
    let cut = Instant::now();
    let writers = nodes.start_writes(&[0, 1], &all);
    std::thread::sleep(Duration::from_millis(200));
    Nodes::kill9(&mut nodes.corosyncs[2]);
    nodes.finish_writes(writers);
    let stopped = nodes.await_outage(2, CUT_OFF_WITHIN);
    eprintln!(
        "figures: corosync 2 killed: AMF 2 stopped serving within {stopped:?}; the \
         others' writes all acknowledged {:?} after",
        cut.elapsed()
    );
    nodes.await_live(&[0, 1], 2);
    nodes.start_corosync(2);
    nodes.await_quorate(&[0, 1, 2]);
    let back = nodes.await_live(&[0, 1, 2], 3);
    eprintln!("figures: corosync 2 restarted: AMF 2 serves again {back:?} after quorum");
    must(&nodes.uri(2), &Nodes::reads(&all));

    // A partition: node 2 cut off from the two. It must stop serving within the bound;
    // the two go on once the bound passed; healed, it rejoins.
    let all = patterns(VOLUME_BYTES, 3 * MIB, 0x81);
    let cut = Instant::now();
    let writers = nodes.start_writes(&[0, 1], &all);
    std::thread::sleep(Duration::from_millis(200));
    nodes.set_link(2, false);
    let stopped = nodes.await_outage(2, CUT_OFF_WITHIN);
    nodes.finish_writes(writers);
    let majority = cut.elapsed();
    nodes.await_live(&[0, 1], 2);
    nodes.set_link(2, true);
    let back = nodes.await_live(&[0, 1, 2], 3);
    eprintln!(
        "figures: node 2 cut off: it stopped serving after {stopped:?}; the two's writes \
         all acknowledged {majority:?} after the cut; healed: serving again {back:?} after"
    );
    must(&nodes.uri(2), &Nodes::reads(&all));

    // 3% packet loss both ways on node 1's link: knet and TCP retransmit; nothing is
    // lost. (nftables drops at random: this kernel has no tc netem, CONFIG_NET_SCH_NETEM.)
    nodes.drop_packets(1, Some(3));
    let all = patterns(VOLUME_BYTES, 5 * MIB, 0xa1);
    let lossy = Instant::now();
    nodes.write_through(&[0, 1, 2], &all);
    eprintln!(
        "figures: 3% loss both ways on node 1: writes through all three took {:?}",
        lossy.elapsed()
    );
    nodes.drop_packets(1, None);

    // Each step's writes were read back right after it (later steps overwrite them).
    for node in 0..NODES {
        must(&nodes.uri(node), &Nodes::reads(&all));
    }
    for node in 0..NODES {
        if let Some(child) = nodes.amfs[node].take() {
            let pid = child.id().to_string();
            run("kill", &["-TERM", &pid]);
            let status = { child }.wait().unwrap();
            assert!(status.success(), "AMF {node} stopped cleanly: {status}");
        }
    }
    assert_eq!(scrub_mismatches(&nodes.dir), 0);
}

//! What the NBD tests share: an in-memory device and an in-process server.
//!
//! The device here is a test device; the RAID volume behind `amf serve` is tested end to end
//! elsewhere.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use amflink::block::{BlockDevice, BlockError, check_range};
use amflink::nbd::{ServerOptions, ServerStats, serve};

/// A volume in memory; `write_delay` makes writes slow, to hold requests in flight.
#[derive(Debug)]
pub struct MemoryDevice {
    pub bytes: RwLock<Vec<u8>>,
    pub flushes: AtomicU64,
    pub writes: AtomicU64,
    pub write_delay: Duration,
}

impl MemoryDevice {
    pub fn new(size_bytes: usize) -> Arc<MemoryDevice> {
        MemoryDevice::with_delay(size_bytes, Duration::ZERO)
    }

    pub fn with_delay(size_bytes: usize, write_delay: Duration) -> Arc<MemoryDevice> {
        Arc::new(MemoryDevice {
            bytes: RwLock::new(vec![0; size_bytes]),
            flushes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            write_delay,
        })
    }

    pub fn snapshot(&self) -> Vec<u8> {
        self.bytes.read().unwrap().clone()
    }

    fn range(&self, offset: u64, length: u64) -> Result<std::ops::Range<usize>, BlockError> {
        check_range(offset, length, self.size_bytes())?;
        Ok(offset as usize..(offset + length) as usize)
    }
}

impl BlockDevice for MemoryDevice {
    fn size_bytes(&self) -> u64 {
        self.bytes.read().unwrap().len() as u64
    }

    fn read(&self, offset: u64, buffer: &mut [u8]) -> Result<(), BlockError> {
        let range = self.range(offset, buffer.len() as u64)?;
        buffer.copy_from_slice(&self.bytes.read().unwrap()[range]);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), BlockError> {
        std::thread::sleep(self.write_delay);
        let range = self.range(offset, data.len() as u64)?;
        self.bytes.write().unwrap()[range].copy_from_slice(data);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, length: u64, _fua: bool) -> Result<(), BlockError> {
        let range = self.range(offset, length)?;
        self.bytes.write().unwrap()[range].fill(0);
        Ok(())
    }

    fn trim(&self, offset: u64, length: u64) -> Result<(), BlockError> {
        self.range(offset, length).map(|_| ())
    }

    fn flush(&self) -> Result<(), BlockError> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A server on 127.0.0.1:0 running on its own runtime thread until `stop`.
pub struct TestServer {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<ServerStats>>>,
}

impl TestServer {
    pub fn start(device: Arc<dyn BlockDevice>, options: ServerOptions) -> TestServer {
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                address_sender.send(listener.local_addr().unwrap()).unwrap();
                serve(listener, device, options, async move {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let address = address_receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        TestServer {
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// `nbd://127.0.0.1:PORT/NAME`
    pub fn uri(&self, export_name: &str) -> String {
        format!("nbd://127.0.0.1:{}/{}", self.port(), export_name)
    }

    /// Shuts the server down and returns its stats.
    pub fn stop(mut self) -> ServerStats {
        self.stop.take().unwrap().send(()).unwrap();
        self.thread.take().unwrap().join().unwrap().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs a client tool; a missing tool fails the test (scripts/test installs them).
pub fn run_tool(program: &str, arguments: &[String]) -> Output {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| {
            panic!("{program} must be installed (scripts/test installs it): {error}")
        });
    assert!(
        output.status.success(),
        "{program} {arguments:?} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Deterministic bytes that differ at every offset (no long zero runs).
pub fn random_bytes(length: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut bytes = vec![0u8; length];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

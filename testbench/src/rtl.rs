//! One Verilated model, driven by port name.
//!
//! Ports are looked up once ([`Model::port`]) and then written and read as little-endian
//! 32-bit words (bit 0 of word 0 is the port's bit 0), whatever their width. A rising
//! clock edge is [`Model::rising_edge`]: the clock goes high and the model settles, then low
//! and it settles again, so registers take what they saw before the edge and outputs show
//! their new values when it returns.

/// Why a model or a port could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TestbenchError {
    /// The crate was built without Verilator.
    #[error(
        "verilator was missing when the testbench was built: install Debian's verilator \
         (apt-get install verilator) and rebuild; the RTL tests cannot run without it"
    )]
    VerilatorMissing,
    /// No model of that name was built.
    #[error("no Verilated model named {0:?}")]
    UnknownModel(String),
    /// The model has no port of that name.
    #[error("model {model} has no port {port:?}")]
    UnknownPort { model: &'static str, port: String },
}

/// A port's description, from the generated Verilog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Port name.
    pub name: &'static str,
    /// Width in bits.
    pub width_bits: u32,
    /// An input of the model (else an output).
    pub input: bool,
}

/// A model's description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// Top module name.
    pub name: &'static str,
    /// Its ports, in declaration order (the shim's port numbers).
    pub ports: &'static [PortInfo],
}

include!(concat!(env!("OUT_DIR"), "/models.rs"));

/// A port of one model, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    index: u32,
    width_bits: u32,
    input: bool,
}

impl Port {
    /// Width in bits.
    pub fn width_bits(self) -> u32 {
        self.width_bits
    }

    /// 32-bit words a value of this port takes.
    pub fn words(self) -> usize {
        self.width_bits.div_ceil(32) as usize
    }
}

/// A live Verilated model.
#[derive(Debug)]
pub struct Model {
    info: &'static ModelInfo,
    index: u32,
    handle: ffi::Handle,
    clock: Port,
    cycles: u64,
}

impl Model {
    /// A fresh instance of the model named `name` (all registers at their initial values).
    pub fn new(name: &str) -> Result<Self, TestbenchError> {
        if cfg!(verilator_missing) {
            return Err(TestbenchError::VerilatorMissing);
        }
        let index = MODELS
            .iter()
            .position(|model| model.name == name)
            .ok_or_else(|| TestbenchError::UnknownModel(name.to_owned()))?;
        let info = &MODELS[index];
        let index = u32::try_from(index).expect("a handful of models");
        let clock = Self::find(info, "clock")?;
        let mut model = Self {
            info,
            index,
            handle: ffi::Handle::new(index),
            clock,
            cycles: 0,
        };
        // Settle once with the clock low: Verilator runs the initial blocks on the first
        // evaluation, and a first evaluation with the clock already high is no edge, so
        // the first `rising_edge` (a reset, usually) would be lost on every register whose
        // reset value is not its initial one.
        model.eval();
        Ok(model)
    }

    fn find(info: &'static ModelInfo, name: &str) -> Result<Port, TestbenchError> {
        let index = info
            .ports
            .iter()
            .position(|port| port.name == name)
            .ok_or_else(|| TestbenchError::UnknownPort {
                model: info.name,
                port: name.to_owned(),
            })?;
        let port = info.ports[index];
        Ok(Port {
            index: u32::try_from(index).expect("ports fit u32"),
            width_bits: port.width_bits,
            input: port.input,
        })
    }

    /// The port named `name`.
    pub fn port(&self, name: &str) -> Result<Port, TestbenchError> {
        Self::find(self.info, name)
    }

    /// Name of the model.
    pub fn name(&self) -> &'static str {
        self.info.name
    }

    /// Rising edges so far.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// Drives an input port with `words` (little-endian; exactly the port's word count).
    pub fn set(&mut self, port: Port, words: &[u32]) {
        assert!(
            port.input,
            "port {} of {} is an output",
            port.index, self.info.name
        );
        assert_eq!(
            words.len(),
            port.words(),
            "word count for port {}",
            port.index
        );
        self.handle.set(self.index, port.index, words);
    }

    /// Drives an input port of up to 64 bits.
    pub fn set_u64(&mut self, port: Port, value: u64) {
        let words = [value as u32, (value >> 32) as u32];
        self.set(port, &words[..port.words()]);
    }

    /// Drives a 1-bit input.
    pub fn set_bit(&mut self, port: Port, value: bool) {
        self.set_u64(port, u64::from(value));
    }

    /// Reads a port (little-endian words).
    pub fn get(&mut self, port: Port) -> Vec<u32> {
        assert!(
            !port.input,
            "port {} of {} is an input",
            port.index, self.info.name
        );
        let mut words = vec![0; port.words()];
        self.handle.get(self.index, port.index, &mut words);
        words
    }

    /// Reads an output of up to 64 bits.
    pub fn get_u64(&mut self, port: Port) -> u64 {
        assert!(
            port.width_bits <= 64,
            "port {} is wider than 64 bits",
            port.index
        );
        self.get(port)
            .iter()
            .rev()
            .fold(0, |value, &word| value << 32 | u64::from(word))
    }

    /// Reads a 1-bit output.
    pub fn get_bit(&mut self, port: Port) -> bool {
        self.get_u64(port) & 1 == 1
    }

    /// Settles combinational logic after inputs changed.
    pub fn eval(&mut self) {
        self.handle.eval(self.index);
    }

    /// One rising edge of `clock`, then settle.
    pub fn rising_edge(&mut self) {
        let clock = self.clock;
        self.set(clock, &[1]);
        self.eval();
        self.set(clock, &[0]);
        self.eval();
        self.cycles += 1;
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.handle.free(self.index);
    }
}

/// Bytes to little-endian 32-bit words (byte 0 in bits 7..0 of word 0).
pub fn words_from_bytes(bytes: &[u8]) -> Vec<u32> {
    assert!(
        bytes.len().is_multiple_of(4),
        "{} bytes are not whole words",
        bytes.len()
    );
    bytes
        .chunks_exact(4)
        .map(|chunk| u32::from_le_bytes(chunk.try_into().expect("four bytes")))
        .collect()
}

/// Little-endian 32-bit words to bytes.
pub fn bytes_from_words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|word| word.to_le_bytes()).collect()
}

#[cfg(not(verilator_missing))]
#[allow(unsafe_code)]
mod ffi {
    //! The shim's five C entry points, behind a handle that owns the model.
    use std::ffi::c_void;

    unsafe extern "C" {
        fn tb_new(model: u32) -> *mut c_void;
        fn tb_free(model: u32, handle: *mut c_void);
        fn tb_eval(model: u32, handle: *mut c_void);
        fn tb_set(model: u32, handle: *mut c_void, port: u32, words: *const u32);
        fn tb_get(model: u32, handle: *mut c_void, port: u32, words: *mut u32);
    }

    /// Owns one model instance; only [`super::Model`] creates and frees it, always with the
    /// model index it was created with.
    #[derive(Debug)]
    pub struct Handle(*mut c_void);

    // SAFETY: the model is reached only through this handle, which `&mut` access keeps to
    // one thread at a time; the models are Verilated single-threaded (no --threads), so
    // nothing in them is tied to the thread that created them. `amf serve` moves the rtl
    // card between its worker threads under a mutex.
    unsafe impl Send for Handle {}

    impl Handle {
        pub fn new(model: u32) -> Self {
            // SAFETY: `model` is an index into MODELS, which the shim's switch covers; the
            // shim returns a fresh heap object or null for an unknown index.
            let pointer = unsafe { tb_new(model) };
            assert!(!pointer.is_null(), "shim has no model {model}");
            Self(pointer)
        }

        pub fn free(&mut self, model: u32) {
            // SAFETY: the pointer came from tb_new(model) and is freed once, on drop.
            unsafe { tb_free(model, self.0) };
            self.0 = std::ptr::null_mut();
        }

        pub fn eval(&mut self, model: u32) {
            // SAFETY: a live instance of `model`.
            unsafe { tb_eval(model, self.0) };
        }

        pub fn set(&mut self, model: u32, port: u32, words: &[u32]) {
            // SAFETY: a live instance of `model`; the caller checked `port` is an input of it
            // and `words` holds exactly the port's word count, all the shim reads.
            unsafe { tb_set(model, self.0, port, words.as_ptr()) };
        }

        pub fn get(&mut self, model: u32, port: u32, words: &mut [u32]) {
            // SAFETY: as for `set`; the shim writes exactly the port's word count.
            unsafe { tb_get(model, self.0, port, words.as_mut_ptr()) };
        }
    }
}

#[cfg(verilator_missing)]
mod ffi {
    //! No models were built: [`super::Model::new`] refuses before a handle exists.
    #[derive(Debug)]
    pub struct Handle(std::convert::Infallible);

    impl Handle {
        pub fn new(_model: u32) -> Self {
            unreachable!("Model::new refuses without Verilator")
        }
        pub fn free(&mut self, _model: u32) {
            match self.0 {}
        }
        pub fn eval(&mut self, _model: u32) {
            match self.0 {}
        }
        pub fn set(&mut self, _model: u32, _port: u32, _words: &[u32]) {
            match self.0 {}
        }
        pub fn get(&mut self, _model: u32, _port: u32, _words: &mut [u32]) {
            match self.0 {}
        }
    }
}

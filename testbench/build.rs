//! Verilates the card modules the tests drive and builds them, with a C++ shim, into one
//! static library.
//!
//! For each model: hdl's Verilog, `verilator --cc`, then every generated .cpp through the
//! `cc` crate. The shim is generated from the port lists: one C entry point per operation
//! (new, free, eval, set, get), dispatching on the model's index, so the Rust side has
//! five functions to call, whatever the models. `models.rs` in OUT_DIR tells the Rust side
//! each model's ports.
//!
//! Without Verilator the library is not built: `models.rs` then lists no model, the crate
//! compiles with `cfg(verilator_missing)`, and every test fails saying Verilator is missing.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The modules the testbench drives, by the name gen-verilog gives them.
const MODELS: [&str; 8] = [
    "parity_engine_64",
    "parity_engine_256",
    "parity_engine_512",
    "broadcast_fabric_2",
    "broadcast_fabric_4",
    "broadcast_fabric_8",
    "dual_port_sram",
    "card_top",
];

/// Deliberately wrong variants of a model, for tests that show a suite catches a wrong RTL:
/// (variant name, model it is made from, Verilog text replaced everywhere, replacement).
/// `card_top_wrong_q` drops the x^2 term from Q's reduction (polynomial 0x119, not 0x11d).
const MUTANTS: [(&str, &str, &str, &str); 1] =
    [("card_top_wrong_q", "card_top", " ^ (q_high << 32'h2)", "")];

/// A top-level port of a module.
struct Port {
    name: String,
    width_bits: u32,
    input: bool,
}

fn main() {
    println!("cargo:rustc-check-cfg=cfg(verilator_missing)");
    println!("cargo:rerun-if-env-changed=VERILATOR");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let Some(verilator) = find_verilator() else {
        println!(
            "cargo:warning=verilator not found (install Debian's verilator, or set VERILATOR): \
             the RTL models are not built and the testbench tests will fail"
        );
        println!("cargo:rustc-cfg=verilator_missing");
        // A path that does not exist makes cargo rerun this script on every build, so a
        // Verilator installed later is found without touching the crate.
        println!("cargo:rerun-if-changed=/usr/bin/verilator");
        write(&out_dir.join("models.rs"), &models_rs(&[]));
        return;
    };
    println!("cargo:rerun-if-changed={}", verilator.display());
    let waivers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hdl/verilator-waivers.vlt");
    println!("cargo:rerun-if-changed={}", waivers.display());

    let modules = hdl::verilog::card_modules();
    let mut models = Vec::new();
    let mut build = cc::Build::new();
    let verilog_of = |name: &str| {
        let module = modules
            .iter()
            .find(|m| m.name == name)
            .expect("gen-verilog writes every model");
        module.verilog.clone()
    };
    let mutants = MUTANTS.iter().map(|&(name, base, from, to)| {
        let verilog = verilog_of(base);
        assert!(
            verilog.contains(from),
            "mutant {name}: {from:?} is not in {base}"
        );
        // Every module of the base is named after it, so renaming the prefix renames them all.
        // The file keeps the base's name at its end, so the base's lint waivers apply.
        (
            name,
            format!("{name}_of_{base}.v"),
            verilog.replace(from, to).replace(base, name),
        )
    });
    let models_plain = MODELS
        .iter()
        .map(|&name| (name, format!("{name}.v"), verilog_of(name)));
    for (name, file, text) in models_plain.chain(mutants) {
        let model_dir = out_dir.join(name);
        std::fs::create_dir_all(&model_dir).expect("create the model directory");
        let verilog = model_dir.join(file);
        write(&verilog, &text);
        verilate(&verilator, &waivers, &verilog, name, &model_dir);
        for source in cpp_files(&model_dir) {
            build.file(source);
        }
        build.include(&model_dir);
        models.push((name, ports(&text, name)));
    }
    let include = verilator_include(&verilator);
    let shim = out_dir.join("shim.cpp");
    write(&shim, &shim_cpp(&models));
    build
        .cpp(true)
        .std("c++17")
        .warnings(false)
        .include(&include)
        .include(include.join("vltstd"))
        .file(include.join("verilated.cpp"))
        .file(include.join("verilated_threads.cpp"))
        .file(&shim)
        .compile("testbench_models");
    println!("cargo:rustc-link-lib=pthread");
    write(&out_dir.join("models.rs"), &models_rs(&models));
}

fn find_verilator() -> Option<PathBuf> {
    let candidate =
        std::env::var_os("VERILATOR").map_or_else(|| PathBuf::from("verilator"), PathBuf::from);
    let found = Command::new(&candidate).arg("--version").output().ok()?;
    if !found.status.success() {
        return None;
    }
    let path = Command::new("sh")
        .args(["-c", "command -v \"$0\"", candidate.to_str()?])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    Some(path.unwrap_or(candidate))
}

/// Verilator's include directory, from `verilator --getenv VERILATOR_ROOT`.
fn verilator_include(verilator: &Path) -> PathBuf {
    let output = Command::new(verilator)
        .args(["--getenv", "VERILATOR_ROOT"])
        .output()
        .expect("run verilator --getenv");
    assert!(
        output.status.success(),
        "verilator --getenv VERILATOR_ROOT failed"
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("include")
}

fn verilate(verilator: &Path, waivers: &Path, verilog: &Path, name: &str, model_dir: &Path) {
    let status = Command::new(verilator)
        .args(["--cc", "-O3", "-Wall", "--top-module", name, "--prefix"])
        .arg(format!("V{name}"))
        .arg("--Mdir")
        .arg(model_dir)
        .arg(waivers)
        .arg(verilog)
        .status()
        .expect("run verilator");
    assert!(
        status.success(),
        "verilator failed on {}",
        verilog.display()
    );
}

fn cpp_files(model_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(model_dir)
        .expect("read the model directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "cpp"))
        .collect();
    files.sort();
    files
}

/// The ports of `module` in the generated Verilog (`input wire [7:0] name;` lines).
fn ports(verilog: &str, module: &str) -> Vec<Port> {
    let header = format!("module {module}(");
    let body = verilog.split_once(&header).expect("module declared").1;
    let body = body.split_once("endmodule").expect("module ends").0;
    body.lines()
        .filter_map(|line| {
            let line = line.trim().strip_suffix(';')?;
            let (input, rest) = if let Some(rest) = line.strip_prefix("input wire") {
                (true, rest)
            } else {
                (
                    false,
                    line.strip_prefix("output reg")
                        .or_else(|| line.strip_prefix("output wire"))?,
                )
            };
            let rest = rest.trim();
            let (width_bits, name) = match rest.strip_prefix('[') {
                Some(range) => {
                    let (msb, name) = range.split_once(":0]").expect("a [msb:0] range");
                    (
                        msb.trim().parse::<u32>().expect("a numeric msb") + 1,
                        name.trim(),
                    )
                }
                None => (1, rest),
            };
            Some(Port {
                name: name.to_owned(),
                width_bits,
                input,
            })
        })
        .collect()
}

/// C++ that moves 32-bit words in and out of one port, by Verilator's type for its width.
fn port_access(port: &Port, model: &str) -> String {
    let field = format!("static_cast<V{model}*>(m)->{}", port.name);
    let words = port.width_bits.div_ceil(32);
    match (port.input, port.width_bits) {
        (true, 0..=32) => format!("{field} = w[0];"),
        (true, 33..=64) => format!("{field} = uint64_t(w[0]) | (uint64_t(w[1]) << 32);"),
        (true, _) => format!("for (int i = 0; i < {words}; ++i) {field}[i] = w[i];"),
        (false, 0..=32) => format!("w[0] = {field};"),
        (false, 33..=64) => format!("w[0] = uint32_t({field}); w[1] = uint32_t({field} >> 32);"),
        (false, _) => format!("for (int i = 0; i < {words}; ++i) w[i] = {field}[i];"),
    }
}

fn shim_cpp(models: &[(&str, Vec<Port>)]) -> String {
    let mut cpp = String::from(
        "// Generated by testbench/build.rs: the C entry points over every Verilated model.\n\
         #include <cstdint>\n#include \"verilated.h\"\n",
    );
    for (name, _) in models {
        writeln!(cpp, "#include \"V{name}.h\"").unwrap();
    }
    cpp.push_str("extern \"C\" {\n");
    let dispatch = |body: &dyn Fn(usize, &str, &[Port]) -> String| {
        let mut cases = String::new();
        for (index, (name, ports)) in models.iter().enumerate() {
            writeln!(
                cases,
                "    case {index}: {{ {} }} break;",
                body(index, name, ports)
            )
            .unwrap();
        }
        cases
    };
    cpp += "void* tb_new(uint32_t model) {\n  switch (model) {\n";
    cpp += &dispatch(&|_, name, _| format!("return new V{name};"));
    cpp += "  }\n  return nullptr;\n}\n";
    cpp += "void tb_free(uint32_t model, void* m) {\n  switch (model) {\n";
    cpp += &dispatch(&|_, name, _| {
        format!("static_cast<V{name}*>(m)->final(); delete static_cast<V{name}*>(m);")
    });
    cpp += "  }\n}\n";
    cpp += "void tb_eval(uint32_t model, void* m) {\n  switch (model) {\n";
    cpp += &dispatch(&|_, name, _| format!("static_cast<V{name}*>(m)->eval();"));
    cpp += "  }\n}\n";
    for (function, input) in [("tb_set", true), ("tb_get", false)] {
        let constness = if input { "const " } else { "" };
        cpp += &format!(
            "void {function}(uint32_t model, void* m, uint32_t port, {constness}uint32_t* w) {{\n  switch (model) {{\n"
        );
        cpp += &dispatch(&|_, name, ports| {
            let mut inner = String::from("switch (port) {");
            for (index, port) in ports.iter().enumerate().filter(|(_, p)| p.input == input) {
                write!(inner, " case {index}: {} break;", port_access(port, name)).unwrap();
            }
            inner + " }"
        });
        cpp += "  }\n}\n";
    }
    cpp += "}\n";
    cpp
}

fn models_rs(models: &[(&str, Vec<Port>)]) -> String {
    let mut rust = String::from(
        "// Generated by testbench/build.rs.\n/// Every Verilated model, by index.\npub const MODELS: &[ModelInfo] = &[\n",
    );
    for (name, ports) in models {
        writeln!(rust, "    ModelInfo {{ name: {name:?}, ports: &[").unwrap();
        for port in ports {
            writeln!(
                rust,
                "        PortInfo {{ name: {:?}, width_bits: {}, input: {} }},",
                port.name, port.width_bits, port.input
            )
            .unwrap();
        }
        rust.push_str("    ] },\n");
    }
    rust.push_str("];\n");
    rust
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

//! Writes the Verilog of every card module into a directory, one `NAME.v` per module.
//!
//! usage: gen-verilog OUTDIR
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut arguments = std::env::args_os().skip(1);
    let (Some(directory), None) = (arguments.next(), arguments.next()) else {
        eprintln!("usage: gen-verilog OUTDIR");
        return ExitCode::from(2);
    };
    let directory = PathBuf::from(directory);
    if let Err(error) = std::fs::create_dir_all(&directory) {
        eprintln!(
            "gen-verilog: cannot create {}: {error}",
            directory.display()
        );
        return ExitCode::FAILURE;
    }
    for module in hdl::verilog::card_modules() {
        let path = directory.join(format!("{}.v", module.name));
        if let Err(error) = std::fs::write(&path, module.verilog) {
            eprintln!("gen-verilog: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}

//! The `amf` command: see `amf --help`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    amflink::cli::main()
}

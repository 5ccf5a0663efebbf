//! Finds ISA-L through pkg-config. When it is there, links it and sets `cfg(isal_found)`;
//! when it is not, the crate still builds and `isal::available()` says `false`, so the
//! workspace builds on machines without the library (the oracle tests then fail loudly).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(isal_found)");
    println!("cargo::rerun-if-changed=build.rs");
    match pkg_config::Config::new()
        .atleast_version("2.0")
        .probe("libisal")
    {
        Ok(_library) => {
            println!("cargo::rustc-cfg=isal_found");
            rerun_if_pkg_config_dir_changes("libisal");
        }
        Err(error) => {
            // Watch where Debian's libisal-dev puts its .pc file, so installing ISA-L after a
            // first build is noticed without `cargo clean`.
            println!("cargo::rerun-if-changed=/usr/lib/x86_64-linux-gnu/pkgconfig");
            let reason = error.to_string();
            let first_line = reason
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or("pkg-config failed");
            println!("cargo::warning=ISA-L (pkg-config libisal) not found: {first_line}");
        }
    }
}

/// Reruns this script when the package's .pc file changes (reinstall, upgrade, removal).
fn rerun_if_pkg_config_dir_changes(package: &str) {
    let output = std::process::Command::new("pkg-config")
        .args(["--variable=pcfiledir", package])
        .output();
    if let Ok(output) = output {
        let directory = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !directory.is_empty() {
            println!("cargo::rerun-if-changed={directory}/{package}.pc");
        }
    }
}

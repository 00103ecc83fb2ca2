//! The operator console's script and style, minified into the Worker by the esbuild of
//! node_modules (the one worker-build uses): about 2 KB less gzip of every cold start.
//! Natively there is no console (it is part of the wasm edge), so nothing is done.

use std::env;
use std::error::Error;
use std::path::PathBuf;
use std::process::Command;

const FILES: [&str; 2] = ["console.js", "console.css"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo::rerun-if-changed=src/edge/console");
    println!("cargo::rerun-if-env-changed=ESBUILD_BIN");
    if env::var("CARGO_CFG_TARGET_ARCH")? != "wasm32" {
        return Ok(());
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let esbuild =
        env::var_os("ESBUILD_BIN").map_or_else(|| manifest_dir.join("node_modules/.bin/esbuild"), PathBuf::from);
    for file in FILES {
        let status = Command::new(&esbuild)
            .arg(manifest_dir.join("src/edge/console").join(file))
            .args(["--minify", "--log-level=warning"])
            .arg(format!("--outfile={}", out_dir.join(file).display()))
            .status()
            .map_err(|error| format!("{}: {error} (run `make tools` to install it)", esbuild.display()))?;
        if !status.success() {
            return Err(format!("esbuild could not minify src/edge/console/{file}: {status}").into());
        }
    }
    Ok(())
}

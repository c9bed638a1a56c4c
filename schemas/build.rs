//! Compiles `proto/courier/v1/events.proto` into Rust with protox (pure Rust, so no
//! system `protoc` is needed) and keeps the descriptor set for the Avro parity test.

use prost::Message;
use std::{env, error::Error, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["courier/v1/events.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Shipped as `proto::FILE_DESCRIPTOR_SET`: tests walk it, and tools that decode
    // records dynamically (schema registries, prost-reflect) can use it too.
    fs::write(out.join("courier_v1_descriptor.bin"), fds.encode_to_vec())?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}

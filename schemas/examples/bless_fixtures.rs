//! Writes golden fixtures that do not exist yet: `fixtures/v1/<name>.json` from
//! `courier_schemas::samples` and `<name>.bin` from that JSON. It never overwrites:
//! an existing fixture is a promise that those bytes decode forever, so changing
//! one means deleting it by hand and explaining why in review.
//!
//! `cargo run -p courier-schemas --example bless_fixtures`

use courier_schemas::{encode, json, samples};
use std::{error::Error, fs, path::Path};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1");
    fs::create_dir_all(&dir)?;
    let mut written = 0;
    for sample in samples::ALL {
        let json_path = dir.join(format!("{}.json", sample.name));
        if !json_path.exists() {
            fs::write(&json_path, format!("{}\n", sample.line))?;
            println!("wrote {}", json_path.display());
            written += 1;
        }
        let bin_path = dir.join(format!("{}.bin", sample.name));
        if !bin_path.exists() {
            // From the JSON on disk, which may predate the current sample line.
            let line = fs::read_to_string(&json_path)?;
            let event = json::parse_line(line.trim_end())
                .map_err(|e| format!("{}: {e}", json_path.display()))?;
            fs::write(&bin_path, encode(&event))?;
            println!("wrote {}", bin_path.display());
            written += 1;
        }
    }
    println!("{written} fixture file(s) written; existing ones left untouched");
    Ok(())
}

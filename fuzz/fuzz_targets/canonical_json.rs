//! Canonical JSON lines, as `courier produce` reads them: any input parses or is
//! refused with an error, never a panic; what parses writes back to a line that
//! parses to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        if let Ok(event) = courier_schemas::json::parse_line(line) {
            let again = courier_schemas::json::parse_line(&courier_schemas::json::to_line(&event))
                .expect("a written line parses");
            assert_eq!(again, event, "the line round-trips");
        }
    }
});

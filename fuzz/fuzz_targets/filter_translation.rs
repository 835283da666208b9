//! Any filter a manifest can hold reaches the preview and the deploy as the same JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = tanium_operator::fuzzing::filter_translation_from_bytes(data) {
        panic!("preview and deploy differ: {e}");
    }
});

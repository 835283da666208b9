//! Any answer to any operation: a value or an error, never a panic. Input layout:
//! `tanium_operator::fuzzing::answer_from_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tanium_operator::fuzzing::answer_from_bytes(data);
});

//! Arbitrary bytes as raw and text values: never a panic; text refuses only what is not UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| frazil::decode::fuzz::raw(data));

//! Arbitrary bytes as Kafka values through schema inference and the JSON decoder, including a
//! schema grown from them: never a panic; every record is a row or a dead letter.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| frazil::decode::fuzz::json(data));

//! Confluent-framed Protobuf bodies of three message types, damaged frames, and `.proto` texts:
//! never a panic; every record is a row or a dead letter, and a body that parses becomes a row.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    frazil::decode::fuzz::protobuf(data);
});

//! Confluent-framed Avro bodies under two writer schemas, and Avro schema texts: never a panic;
//! every record is a row or a dead letter, and a body the checker passes always decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    frazil::decode::fuzz::avro(data);
});

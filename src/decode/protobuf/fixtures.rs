//! A schema and messages that the tests share: `.proto` texts with an import, and values encoded
//! by Python's protobuf package (7.36, the classes built from these texts by grpcio-tools'
//! protoc), an encoder independent of the one under test.

use std::collections::BTreeMap;

pub(super) use crate::decode::fuzz::{PROTO_READING as READING, PROTO_SITE as SITE};

pub(super) fn imports() -> BTreeMap<String, String> {
    BTreeMap::from([("plant/v1/site.proto".to_string(), SITE.to_string())])
}

/// A `plant.v1.Reading` with every field set: device "gw-01", at 1700000000.123456789 s,
/// temp_c 21.5, counter 2^64 - 1, delta -3, seq 42, alarms [A1, B2], gauges {rpm: 1200, flow:
/// 3.5}, status STATUS_OK, site {north, [1.5, -2]}, battery 87, extra {"note": "ok", "n": 2},
/// payload (type URL of plant.v1.Other, bytes 08 01), line 7, inner {label top, children
/// [{label kid}]}, raw 00 ff, code 4000000000.
pub(super) const FULL: &str = "0a0567772d3031120b0880e2cfaa0610959aef3a19000000000080354020ffffffffffffffffff012805302a3a0241313a024232420f0a04666c6f77110000000000000c40420e0a0372706d110000000000c09240480152190a056e6f7274681210000000000000f83f00000000000000c05a020857621e0a0c0a046e6f746512041a026f6b0a0e0a016e12091100000000000000406a280a22747970652e676f6f676c65617069732e636f6d2f706c616e742e76312e4f7468657212020801780782010c0a0512036b69641203746f708a010200ff950100286bee";

/// A `plant.v1.Reading` with only device "gw-02", status 5 (a number the enum has no name for)
/// and gateway "g9" set.
pub(super) const SPARSE: &str = "0a0567772d3032480572026739";

pub(super) fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

//! Which processor instance owns a sensor: the one assigned the `samples.raw` partition
//! the sensor's samples go to. Absent rules need this for sensors that never sent
//! anything, so exactly one instance watches each of them.

/// The partition librdkafka's default partitioner (`consistent_random`, used by every
/// labstream producer) picks for a non-empty key: CRC-32 (IEEE) of the key modulo the
/// partition count.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    (crc32(key) % partitions as u32) as i32
}

fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        table
    });
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn partitions_are_in_range() {
        for key in ["door-3", "freezer-1", "x"] {
            let p = partition_for_key(key.as_bytes(), 6);
            assert!((0..6).contains(&p));
        }
        assert_eq!(partition_for_key(b"any", 1), 0);
    }
}

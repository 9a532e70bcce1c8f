//! Key names and cluster slots.
//!
//! Every key the module touches for a user must live in the user's cluster slot, so that a cluster
//! routes each command to the one node that owns the user. Slots follow Redis's rule: CRC16/XMODEM of
//! the hash tag (the bytes between the first `{` and the first `}` after it, when not empty) or of the
//! whole id, modulo 16384.
//!
//! Key names:
//! - a user id without braces: `presence:{<user>}`, so the user's own id is the hash tag;
//! - any other user id: `presence:{<tag>}<user>`, where `<tag>` is the shortest string of the slot
//!   table that hashes to the user's slot (see [`slot_tag`]);
//! - the per-slot index of connected devices by deadline: `presence:due:{<tag>}`, whose members
//!   name a user and a device (see [`due_member`]).
//! - the per-slot timers set `presence:timers:{<tag>}` and listings `presence:online:{<tag>}` and
//!   `presence:scope:{<tag>}:<scope>` (see [`timers_key`], [`listing_key`]);
//! - a user's settings: `presence:settings:` and `presence:contacts:` in the user's form above.
//!
//! The two user forms cannot collide: the first contains exactly one `{` and one `}`, the second at
//! least three braces.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

const USER_PREFIX: &[u8] = b"presence:";
const DUE_PREFIX: &[u8] = b"presence:due:";
const TIMERS_PREFIX: &[u8] = b"presence:timers:";
const ONLINE_PREFIX: &[u8] = b"presence:online:";
const SCOPE_PREFIX: &[u8] = b"presence:scope:";

/// CRC16/XMODEM of each byte value, for the byte-at-a-time checksum below.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster uses for slots.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of a key that Redis Cluster hashes: the hash tag when there is a non-empty one.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// The cluster slot of a key (or of a user id, which is declared as the command's key).
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOTS as u16 - 1)
}

/// For every slot, the shortest alphanumeric string that hashes to it (the first found in
/// `0-9A-Za-z` order), to build keys of that slot. Computed at compile time: a table in the
/// binary, nothing allocated.
struct SlotTags {
    bytes: [[u8; MAX_TAG_LEN]; SLOTS],
    lens: [u8; SLOTS],
}

/// Three characters already cover every slot; four is a safety margin.
const MAX_TAG_LEN: usize = 4;

#[allow(long_running_const_eval)]
static SLOT_TAGS: SlotTags = slot_tags();

const fn slot_tags() -> SlotTags {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut tags = SlotTags {
        bytes: [[0; MAX_TAG_LEN]; SLOTS],
        lens: [0; SLOTS],
    };
    let mut missing = SLOTS;
    let mut len = 1;
    // Shortest first.
    while len <= MAX_TAG_LEN && missing > 0 {
        let combos = ALPHABET.len().pow(len as u32);
        let mut n = 0;
        while n < combos && missing > 0 {
            let mut candidate = [0u8; MAX_TAG_LEN];
            let (mut rest, mut i) = (n, 0);
            let mut crc = 0u16;
            while i < len {
                let byte = ALPHABET[rest % ALPHABET.len()];
                candidate[i] = byte;
                crc = (crc << 8) ^ CRC16_TABLE[((crc >> 8) as u8 ^ byte) as usize];
                rest /= ALPHABET.len();
                i += 1;
            }
            let slot = (crc & (SLOTS as u16 - 1)) as usize;
            if tags.lens[slot] == 0 {
                tags.bytes[slot] = candidate;
                tags.lens[slot] = len as u8;
                missing -= 1;
            }
            n += 1;
        }
        len += 1;
    }
    tags
}

/// A short string whose slot is `slot`.
pub fn slot_tag(slot: u16) -> &'static [u8] {
    let slot = usize::from(slot) & (SLOTS - 1);
    &SLOT_TAGS.bytes[slot][..usize::from(SLOT_TAGS.lens[slot])]
}

/// The hash that holds a user's presence record.
pub fn user_key(user: &[u8]) -> Vec<u8> {
    user_scoped_key(USER_PREFIX, user)
}

/// The hash of a user's privacy rules: settings, kept without TTL whatever `retention` does.
pub fn settings_key(user: &[u8]) -> Vec<u8> {
    user_scoped_key(b"presence:settings:", user)
}

/// The set of a user's contacts (who the `contacts` privacy rules let see them).
pub fn contacts_key(user: &[u8]) -> Vec<u8> {
    user_scoped_key(b"presence:contacts:", user)
}

/// `<prefix>{<user>}`, or `<prefix>{<tag>}<user>` for ids with braces: in the user's slot.
fn user_scoped_key(prefix: &[u8], user: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + user.len() + 8);
    key.extend_from_slice(prefix);
    if user.iter().any(|&b| b == b'{' || b == b'}') {
        key.push(b'{');
        key.extend_from_slice(slot_tag(slot(user)));
        key.push(b'}');
        key.extend_from_slice(user);
    } else {
        key.push(b'{');
        key.extend_from_slice(user);
        key.push(b'}');
    }
    key
}

/// The user whose record `name` is, if it is a user key as [`user_key`] builds them.
pub fn parse_user_key(name: &[u8]) -> Option<&[u8]> {
    let rest = name.strip_prefix(USER_PREFIX)?.strip_prefix(b"{")?;
    let braces = |bytes: &[u8]| bytes.iter().any(|&b| b == b'{' || b == b'}');
    if let Some(user) = rest.strip_suffix(b"}") {
        if !user.is_empty() && !braces(user) {
            return Some(user);
        }
    }
    let close = rest.iter().position(|&b| b == b'}')?;
    let (tag, user) = (rest.get(..close)?, rest.get(close + 1..)?);
    (braces(user) && tag == slot_tag(slot(user))).then_some(user)
}

/// The user's own events channel (sharded pub/sub): named like the user's key, so it is in the
/// user's slot — `presence:{<user>}` for ids without braces.
pub fn user_channel(user: &[u8]) -> Vec<u8> {
    user_key(user)
}

/// The channel of a room's events: `presence:room:<room>`.
pub fn room_channel(room: &[u8]) -> Vec<u8> {
    let mut channel = b"presence:room:".to_vec();
    channel.extend_from_slice(room);
    channel
}

/// Two ids as one string, `<length of first>:<first>:<second>`: the length makes it unambiguous
/// for any bytes, and the text stays readable (`ZRANGE`, `HGETALL`).
pub fn id_pair(first: &[u8], second: &[u8]) -> Vec<u8> {
    let len = first.len().to_string();
    let mut pair = Vec::with_capacity(len.len() + first.len() + second.len() + 2);
    pair.extend_from_slice(len.as_bytes());
    pair.push(b':');
    pair.extend_from_slice(first);
    pair.push(b':');
    pair.extend_from_slice(second);
    pair
}

/// The two ids of an [`id_pair`], if it is well formed (the second is not empty).
pub fn parse_id_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    // Pairs come from keys anyone may write to: no length is trusted.
    let colon = pair.iter().position(|&b| b == b':')?;
    let (digits, rest) = (pair.get(..colon)?, pair.get(colon + 1..)?);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let (first, rest) = (rest.get(..len)?, rest.get(len..)?);
    let second = rest.strip_prefix(b":")?;
    if second.is_empty() {
        return None;
    }
    Some((first, second))
}

/// A device's member in the due index: `<length of user>:<user>:<device>` (an [`id_pair`]).
pub fn due_member(user: &[u8], device: &[u8]) -> Vec<u8> {
    id_pair(user, device)
}

/// The user and device a due-index member names, if it is well formed.
pub fn parse_due_member(member: &[u8]) -> Option<(&[u8], &[u8])> {
    parse_id_pair(member)
}

/// The sorted set of the slot's connected devices, scored by their deadline.
pub fn due_key(slot: u16) -> Vec<u8> {
    slot_key(DUE_PREFIX, slot)
}

/// The sorted set of the slot's users with a timer of their own (a manual status or a grace
/// period ending), scored by when it fires. Kept apart from the device index so both stay small enough
/// for the compact listpack encoding.
pub fn timers_key(slot: u16) -> Vec<u8> {
    slot_key(TIMERS_PREFIX, slot)
}

/// The sorted set of the slot's listed users (connected and not invisible), scored by their last
/// activity: `presence:online:{<tag>}` for everyone, `presence:scope:{<tag>}:<scope>` for the
/// members of a scope.
pub fn listing_key(slot: u16, scope: Option<&[u8]>) -> Vec<u8> {
    match scope {
        None => slot_key(ONLINE_PREFIX, slot),
        Some(scope) => {
            let mut key = slot_key(SCOPE_PREFIX, slot);
            key.push(b':');
            key.extend_from_slice(scope);
            key
        }
    }
}

/// The slot and scope (`None`: everyone) of a listing key, if `name` is one as [`listing_key`]
/// builds them.
pub fn parse_listing_key(name: &[u8]) -> Option<(u16, Option<&[u8]>)> {
    let (rest, scoped) = match name.strip_prefix(ONLINE_PREFIX) {
        Some(rest) => (rest, false),
        None => (name.strip_prefix(SCOPE_PREFIX)?, true),
    };
    let rest = rest.strip_prefix(b"{")?;
    let close = rest.iter().position(|&b| b == b'}')?;
    let (tag, after) = (&rest[..close], &rest[close + 1..]);
    let slot = slot(name);
    if tag != slot_tag(slot) {
        return None;
    }
    match (scoped, after) {
        (false, []) => Some((slot, None)),
        (true, [b':', scope @ ..]) if !scope.is_empty() => Some((slot, Some(scope))),
        _ => None,
    }
}

/// The slot of a due index or timers set, if `name` is one.
pub fn parse_index_key(name: &[u8]) -> Option<u16> {
    if !name.starts_with(DUE_PREFIX) && !name.starts_with(TIMERS_PREFIX) {
        return None;
    }
    let slot = slot(name);
    (due_key(slot) == name || timers_key(slot) == name).then_some(slot)
}

fn slot_key(prefix: &[u8], slot: u16) -> Vec<u8> {
    let tag = slot_tag(slot);
    let mut key = Vec::with_capacity(prefix.len() + tag.len() + 2);
    key.extend_from_slice(prefix);
    key.push(b'{');
    key.extend_from_slice(tag);
    key.push(b'}');
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_name_their_slot() {
        let slot = slot(b"bob");
        assert_eq!(parse_index_key(&due_key(slot)), Some(slot));
        assert_eq!(parse_index_key(&timers_key(slot)), Some(slot));
        assert_eq!(parse_index_key(b"presence:due:{xyzzy}"), None);
        assert_eq!(parse_index_key(b"presence:{bob}"), None);
    }

    #[test]
    fn listing_keys_name_their_slot_and_scope() {
        let slot = slot(b"alice");
        let all = listing_key(slot, None);
        assert_eq!(parse_listing_key(&all), Some((slot, None)));
        let zone = listing_key(slot, Some(b"zone:{10}"));
        assert_eq!(
            parse_listing_key(&zone),
            Some((slot, Some(&b"zone:{10}"[..])))
        );
        assert_eq!(self::slot(&zone), slot);
        for other in [
            &b"presence:online:{xyzzy}"[..],
            b"presence:scope:{alice}",
            b"presence:scope:{alice}:",
            b"presence:{alice}",
            b"presence:due:{a}",
        ] {
            assert_eq!(parse_listing_key(other), None, "{other:?}");
        }
    }

    #[test]
    fn crc16_matches_the_cluster_specification() {
        // The reference value given in the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_match_known_values() {
        // Values as answered by CLUSTER KEYSLOT.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"somekey"), 11058);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    /// The slot as the cluster specification states it, written independently of `slot`: a
    /// bit-by-bit CRC16 and the hash tag found by splitting at the braces.
    fn reference_slot(key: &[u8]) -> u16 {
        let hashed = match key.splitn(2, |&b| b == b'{').nth(1) {
            Some(after_open) => {
                match after_open.splitn(2, |&b| b == b'}').collect::<Vec<_>>()[..] {
                    [tag, _] if !tag.is_empty() => tag,
                    _ => key,
                }
            }
            None => key,
        };
        let mut crc: u32 = 0;
        for &byte in hashed {
            for bit in (0..8).rev() {
                let carry = (crc >> 15) & 1 != u32::from((byte >> bit) & 1);
                crc = (crc << 1) & 0xffff;
                if carry {
                    crc ^= 0x1021;
                }
            }
        }
        (crc % 16384) as u16
    }

    #[test]
    fn slots_agree_with_an_independent_implementation_over_random_ids() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            let len = (next() % 24) as usize;
            let id: Vec<u8> = (0..len)
                .map(|_| match next() % 8 {
                    0 => b'{',
                    1 => b'}',
                    _ => (next() % 256) as u8,
                })
                .collect();
            assert_eq!(slot(&id), reference_slot(&id), "{id:?}");
        }
        assert_eq!(
            reference_slot(b"foo"),
            12182,
            "the reference itself is right"
        );
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for s in 0..SLOTS as u16 {
            let tag = slot_tag(s);
            assert!(!tag.is_empty() && tag.len() <= 4, "slot {s}");
            assert_eq!(slot(tag), s);
        }
    }

    #[test]
    fn user_keys_are_in_the_users_slot() {
        let users: &[&[u8]] = &[
            b"alice",
            b"user:000000012345",
            b"{room1}alice",
            b"a{",
            b"a}b",
            b"a{}b",
            b"}{",
            b"{{}}",
            b"with space",
            b"nul\0byte",
            b"\xff\xfe",
        ];
        for user in users {
            assert_eq!(slot(&user_key(user)), slot(user), "{user:?}");
            assert_eq!(slot(&settings_key(user)), slot(user), "{user:?}");
            assert_eq!(slot(&contacts_key(user)), slot(user), "{user:?}");
        }
    }

    #[test]
    fn user_keys_name_their_user() {
        for user in [
            &b"alice"[..],
            b"{room1}alice",
            b"a{",
            b"}{",
            b"{{}}",
            b"\xff",
            b"due:x",
        ] {
            assert_eq!(parse_user_key(&user_key(user)), Some(user), "{user:?}");
        }
        for other in [
            &b"presence:due:{a}"[..],
            b"presence:settings:{alice}",
            b"presence:{}",
            b"presence:{a}b",
            b"presence:{zz}a{b",
            b"presence:online:{0}",
            b"other",
        ] {
            assert_eq!(parse_user_key(other), None, "{other:?}");
        }
    }

    #[test]
    fn plain_ids_use_themselves_as_hash_tag() {
        assert_eq!(user_key(b"alice"), b"presence:{alice}");
    }

    #[test]
    fn user_keys_do_not_collide() {
        let users: &[&[u8]] = &[b"abc", b"{abc}", b"{abc", b"abc}", b"x{abc}", b"{x}abc"];
        let mut keys: Vec<Vec<u8>> = users.iter().map(|u| user_key(u)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), users.len());
    }

    #[test]
    fn due_members_round_trip_any_bytes() {
        assert_eq!(due_member(b"alice", b"phone"), b"5:alice:phone");
        for (user, device) in [
            (&b"alice"[..], &b"phone"[..]),
            (b"a:b", b":c:"),
            (b"1:x", b"2"),
            (b"\0\xff", b"\r\n"),
        ] {
            assert_eq!(
                parse_due_member(&due_member(user, device)),
                Some((user, device))
            );
        }
        for bad in [
            &b""[..],
            b"alice",
            b"x:alice:p",
            b"9:alice:p",
            b"5:alicephone",
            b"-1::",
            b"5:alice:",
            b"5:alice",
            b"18446744073709551615:x",
            b"18446744073709551616:x",
            b"99999999999999999999999:x",
            b"+5:alice:p",
            b"0::",
        ] {
            assert_eq!(parse_due_member(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn due_keys_are_in_their_slot() {
        for s in [0u16, 1, 5061, 12182, 16383] {
            assert_eq!(slot(&due_key(s)), s);
            assert_eq!(slot(&timers_key(s)), s);
        }
    }
}

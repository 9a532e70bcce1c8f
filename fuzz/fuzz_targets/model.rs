//! Fuzzes the pure code: argument parsing on arbitrary arguments, and the presence model driven by
//! arbitrary sequences of connects, heartbeats, departures and clock jumps, checking its rules:
//! settling never changes what reads report, the stored form round-trips, every event's seq is
//! one more than the last, and the reported status agrees with the devices; and the listing merge:
//! paging through arbitrary slots of members gives exactly their sorted order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence::listing::{self, Position};
use presence::model::{self, Manual, Presence, Rules, Span, Status};
use presence::{args, codec};

fn parsing(data: &[u8]) {
    let argv: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let _ = args::online(&argv);
    let _ = args::heartbeat(&argv);
    let _ = args::bulk_users(&argv, 8);
    if let Ok(bulk) = args::bulk(&argv, 8) {
        assert!(!bulk.users.is_empty() && bulk.users.len() <= 8);
    }
    let parts = args::bulk_parts(&argv);
    assert!(parts.users.start <= parts.users.end && parts.users.end <= argv.len());
    let _ = args::fanout(&argv, 8);
    // FANOUT's EVENT payloads come from clients: what parses prints back and parses the same.
    if let Some((user, event)) = presence::events::parse(data) {
        let again = presence::events::json(&user, &event);
        assert_eq!(presence::events::parse(&again), Some((user, event)));
    }
    let _ = args::options(&argv, &["TTL", "META", "LIMIT"]);
    if let Ok(list) = args::list(&argv) {
        assert!((1..=listing::MAX_LIMIT).contains(&list.limit));
    }
    let _ = args::count(&argv);
    for arg in &argv {
        if let Ok(ttl) = args::ttl(arg) {
            assert!((args::MIN_TTL..=args::MAX_TTL).contains(&ttl.0));
        }
        if let Ok(meta) = args::meta(arg) {
            assert!(meta.len() <= args::MAX_META_LEN);
        }
        let _ = args::integer(arg);
        for result in [args::online(&argv).err(), args::heartbeat(&argv).err()]
            .into_iter()
            .flatten()
        {
            let text = result.to_string();
            assert!(text.is_ascii() && text.starts_with("ERR "));
        }
        assert!(args::shown(arg).is_ascii());
        if let Some(position) = Position::parse_cursor(arg) {
            assert_eq!(
                Position::parse_cursor(position.cursor().as_bytes()),
                Some(position)
            );
        }
    }
}

/// Members spread over slots, paged at every limit: the pages together are the members sorted,
/// most recent first, each once.
fn listing_pages(data: &[u8]) {
    let members: Vec<(u16, Position)> = data
        .chunks(3)
        .map(|c| {
            let slot = u16::from(c[0] % 8);
            // A user lives in one slot: the id starts with it.
            let user = vec![slot as u8, c.get(1).copied().unwrap_or(0) % 4];
            let last_active = i64::from(c.get(2).copied().unwrap_or(0) % 5);
            (slot, Position { last_active, user })
        })
        .collect();
    // A sorted set holds a user once: keep the first of each.
    let mut seen = std::collections::BTreeSet::new();
    let members: Vec<(u16, Position)> = members
        .into_iter()
        .filter(|(_, p)| seen.insert(p.user.clone()))
        .collect();
    // The directory as the module's own writes build it, one member at a time.
    let mut directory = listing::Directory::default();
    for (slot, p) in &members {
        directory.replace(*slot, None, Some(p.last_active));
    }
    let slots = directory.members();
    let next = |slot: u16, bound: Option<&Position>| {
        members
            .iter()
            .filter(|(s, p)| *s == slot && bound.is_none_or(|b| p < b))
            .map(|(_, p)| p.clone())
            .max()
    };
    let mut expected: Vec<Position> = members.iter().map(|(_, p)| p.clone()).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    for limit in [1, 2, 5, 1000] {
        let (mut all, mut after) = (Vec::new(), None::<Position>);
        loop {
            let (rows, more) = listing::page(slots, after.as_ref(), limit, next);
            after = rows.last().cloned().or(after);
            all.extend(rows);
            if !more {
                break;
            }
        }
        assert_eq!(all, expected, "limit {limit}");
    }
    // A room of some of them, in the room index, paged in the same order.
    let mut index = listing::rooms::RoomIndex::default();
    let in_room: Vec<bool> = (0..members.len())
        .map(|i| data.get(i).is_some_and(|b| b & 0x80 != 0))
        .collect();
    for ((slot, p), in_room) in members.iter().zip(&in_room) {
        let rooms: Vec<&[u8]> = if *in_room {
            vec![b"r", b"s"]
        } else {
            vec![b"s"]
        };
        index.put(*slot, &p.user, &[], Some((p.last_active, &rooms)));
    }
    let at = |slot: u16, score: i64| -> Vec<Vec<u8>> {
        members
            .iter()
            .filter(|(s, p)| *s == slot && p.last_active == score)
            .map(|(_, p)| p.user.clone())
            .collect()
    };
    let expected: Vec<Position> = expected
        .into_iter()
        .filter(|p| {
            members
                .iter()
                .zip(&in_room)
                .any(|((_, m), r)| *r && m.user == p.user)
        })
        .collect();
    assert_eq!(index.count(b"r"), expected.len() as u64);
    for limit in [1, 2, 5, 1000] {
        let (mut all, mut after) = (Vec::new(), None::<Position>);
        loop {
            let (rows, more) = index.page(b"r", after.as_ref(), limit, at);
            after = rows.last().cloned().or(after);
            all.extend(rows);
            if !more {
                break;
            }
        }
        assert_eq!(all, expected, "room, limit {limit}");
    }
}

fn model(data: &[u8]) {
    let mut record = Presence::with_rules(Rules {
        device_events: data.first().is_some_and(|b| b & 1 == 1),
        away_after: Span(data.get(1).map_or(0, |b| i64::from(*b) * 13)),
        grace: Span(data.get(2).map_or(0, |b| i64::from(*b % 4) * 200)),
        manual_ends_offline: data.first().is_some_and(|b| b & 2 == 2),
        activity_ends_away: data.first().is_some_and(|b| b & 4 == 4),
    });
    let mut now: i64 = 1_700_000_000_000;
    let mut last_seq = 0;
    for step in data.chunks(3) {
        let op = step[0] % 12;
        let device = [b'a' + step.get(1).copied().unwrap_or(0) % 5];
        let jump = i64::from(step.get(2).copied().unwrap_or(0)) * 7;
        now += jump;

        let view = record.view(now);
        let mut settled = record.clone();
        settled.settle(now);
        assert_eq!(settled.view(now), view, "settling changed a read");
        record = settled;

        let ttl = Span(100 + jump * 3);
        match op {
            0 => {
                let _ = record.connect(&device, ttl, None, None, now, 3);
            }
            1 => {
                let scopes = Some(vec![device.to_vec()]);
                let _ = record.connect(&device, ttl, Some("{\"m\":1}".into()), scopes, now, 3);
            }
            2 | 3 => {
                let _ =
                    record.heartbeat(&device, (op == 3).then_some(ttl), None, Span(250), now, 3);
            }
            4 => {
                let _ = record.disconnect(&device, now);
            }
            5 => record.activity(now),
            6 | 7 => {
                let statuses = [
                    Status::Online,
                    Status::Away,
                    Status::Busy,
                    Status::Dnd,
                    Status::Invisible,
                ];
                let manual = (op == 6).then(|| Manual {
                    status: statuses[usize::from(step[0] / 10) % statuses.len()],
                    message: None,
                    until: (jump % 2 == 0).then_some(now + jump * 5),
                });
                record.set_manual(manual, now);
            }
            8 => {
                record.set_context(&device, Some(vec![step[0]]));
            }
            9 => {
                // Rooms named like the devices, so scopes (op 1) and joins meet.
                let room = [b'a' + step[0] / 12 % 5];
                let data = (jump % 3 == 0).then(|| "{\"d\":1}".to_string());
                let _ = record.join(&device, &room, data, now, 2);
            }
            10 => {
                let room = [b'a' + step[0] / 12 % 5];
                let _ = record.leave(&device, &room, now);
            }
            11 => {
                let room = [b'a' + step[0] / 12 % 5];
                let typing = (step[0] / 12 % 2 == 0).then_some(&room[..]);
                let _ = record.type_in(&device, typing, Span(50 + jump), now);
            }
            _ => {}
        }

        // User events and room events share one sequence: the first from the time
        // (model::next_seq), then one more each.
        let mut seqs: Vec<(u64, i64)> =
            record.take_events().iter().map(|e| (e.seq, e.ts)).collect();
        let room_events = record.take_room_events();
        seqs.extend(room_events.iter().map(|e| (e.seq, e.ts)));
        seqs.sort_unstable();
        for (seq, ts) in seqs {
            let expected = model::next_seq(last_seq, ts);
            assert_eq!(
                seq, expected,
                "seq must start from the time, then grow by one"
            );
            last_seq = seq;
        }
        for event in &room_events {
            // Nothing of a user who looks offline is announced to a room, but their leaving.
            let leaving = event.change == model::RoomChange::Leave
                || (event.change == model::RoomChange::Typing && !event.typing);
            assert!(leaving || event.status != Status::Offline, "{event:?}");
        }
        if record.devices.is_empty() && record.leaving.is_none() {
            assert!(record.rooms().is_empty(), "an offline user is in no room");
        }
        assert!(record.devices.len() <= 3);

        let view = record.view(now);
        let mut settled = record.clone();
        settled.settle(now);
        // Offline means no device; no device means offline, except within a grace period.
        assert!(view.status != Status::Offline || view.devices == 0);
        assert!(view.devices > 0 || view.status == Status::Offline || settled.leaving.is_some());
        assert_eq!(view.devices, record.live_count(now));
        assert_eq!(view.manual, settled.manual.is_some());
        for event in &settled.events {
            assert_ne!(
                event.status,
                Status::Invisible,
                "events show what others see"
            );
        }

        let due = codec::deadlines(&record);
        let fields = codec::encode(&record);
        let back = codec::decode(
            fields.iter().map(|(f, v)| (f.as_slice(), v.as_slice())),
            |id| due.get(id).copied(),
            i64::MAX,
        );
        assert_eq!(back, record.record, "the stored form must round-trip");
    }
}

fuzz_target!(|data: &[u8]| {
    parsing(data);
    model(data);
    listing_pages(data);
});

//! The model's rules, each tested without a server.

use super::*;

const TTL: Span = Span(1000);
const MAX: usize = 32;

fn online(record: &mut Presence, device: &[u8], now: Millis) -> usize {
    record.settle(now);
    record.connect(device, TTL, None, None, now, MAX).unwrap()
}

#[test]
fn a_new_user_is_offline_and_never_seen() {
    let view = Presence::default().view(5);
    assert_eq!(
        view,
        View {
            status: Status::Offline,
            devices: 0,
            last_seen: None,
            since: None,
            message: None,
            manual: false,
            last_active: None,
            scopes: Vec::new(),
            last_device: None,
        }
    );
}

#[test]
fn connecting_makes_the_user_online_since_then() {
    let mut r = Presence::default();
    assert_eq!(online(&mut r, b"phone", 100), 1);
    let view = r.view(150);
    assert_eq!(view.status, Status::Online);
    assert_eq!(view.devices, 1);
    assert_eq!(view.since, Some(100));
    assert_eq!(view.last_seen, Some(100));
}

#[test]
fn a_second_device_keeps_since_and_counts() {
    let mut r = Presence::default();
    online(&mut r, b"phone", 100);
    assert_eq!(online(&mut r, b"laptop", 200), 2);
    let view = r.view(250);
    assert_eq!(view.devices, 2);
    assert_eq!(view.since, Some(100));
    assert_eq!(view.last_seen, Some(200));
}

#[test]
fn refreshing_keeps_connected_at_and_meta_unless_replaced() {
    let mut r = Presence::default();
    r.connect(b"d", TTL, Some("{\"a\":1}".into()), None, 100, MAX)
        .unwrap();
    assert_eq!(r.connect(b"d", Span(5000), None, None, 300, MAX), Ok(1));
    let d = &r.devices[&b"d".to_vec()];
    assert_eq!(
        (d.connected_at, d.last_heartbeat, d.ttl),
        (100, 300, Span(5000))
    );
    assert_eq!(d.meta.as_deref(), Some("{\"a\":1}"));
    r.connect(b"d", TTL, Some("{}".into()), None, 400, MAX)
        .unwrap();
    assert_eq!(r.devices[&b"d".to_vec()].meta.as_deref(), Some("{}"));
}

#[test]
fn a_device_past_its_deadline_is_not_connected() {
    let mut r = Presence::default();
    online(&mut r, b"phone", 100);
    assert_eq!(r.view(1099).status, Status::Online);
    let view = r.view(1100);
    assert_eq!(view.status, Status::Offline);
    assert_eq!(view.devices, 0);
    assert_eq!(view.last_seen, Some(100));
    assert_eq!(view.since, Some(100));
}

#[test]
fn settling_removes_expired_devices_and_records_the_last_heartbeat() {
    let mut r = Presence::default();
    online(&mut r, b"a", 100);
    r.heartbeat(b"a", None, None, TTL, 400, MAX).unwrap();
    online(&mut r, b"b", 500);
    assert_eq!(r.settle(1450), 1);
    assert!(!r.devices.contains_key(b"a".as_slice()));
    assert_eq!(r.view(1450).status, Status::Online);
    assert_eq!(r.view(1450).since, Some(100));
    assert_eq!(r.settle(1500), 1);
    let view = r.view(1500);
    assert_eq!(view.status, Status::Offline);
    assert_eq!(view.last_seen, Some(500));
    assert_eq!(view.since, Some(500));
    assert_eq!(r.settle(5000), 0);
}

fn summary(r: &Presence) -> Vec<(&'static str, &'static str, &'static str, String, usize, u64)> {
    r.events
        .iter()
        .map(|e| {
            (
                e.status.as_str(),
                e.prev.as_str(),
                e.reason.as_str(),
                String::from_utf8_lossy(&e.device).into_owned(),
                e.devices,
                e.seq,
            )
        })
        .collect()
}

#[test]
fn status_changes_are_announced_with_growing_seq_from_the_first_events_time() {
    let mut r = Presence::default();
    online(&mut r, b"a", 100);
    online(&mut r, b"b", 200);
    r.heartbeat(b"a", None, None, TTL, 300, MAX).unwrap();
    r.disconnect(b"a", 400);
    r.disconnect(b"b", 500);
    online(&mut r, b"c", 600);
    r.settle(1600);
    assert_eq!(
        summary(&r),
        vec![
            ("online", "offline", "connect", "a".into(), 1, 100_000),
            ("offline", "online", "disconnect", "b".into(), 0, 100_001),
            ("online", "offline", "connect", "c".into(), 1, 100_002),
            ("offline", "online", "timeout", "c".into(), 0, 100_003),
        ]
    );
    let timeout = &r.events[3];
    assert_eq!((timeout.ts, timeout.last_seen), (1600, Some(600)));
    assert_eq!(r.events[1].last_seen, Some(500));
    assert_eq!(r.events[0].last_seen, Some(100));
}

#[test]
fn seq_starts_from_the_time_and_restarts_only_from_nothing_or_garbage() {
    assert_eq!(next_seq(0, 1_700_000_000_123), 1_700_000_000_123_000);
    assert_eq!(next_seq(41, 1_700_000_000_123), 42);
    assert_eq!(next_seq(0, 0), 1);
    assert_eq!(next_seq(0, -5), 1);
    assert_eq!(next_seq(0, Millis::MAX), MAX_SEQ);
    assert_eq!(next_seq(MAX_SEQ, 7), 7000);
    // A record lost after many events still restarts above them.
    let lost_at = 1_700_000_000_123;
    let remembered = next_seq(0, lost_at - 1) + 999;
    assert!(next_seq(0, lost_at) > remembered);
}

#[test]
fn a_device_only_the_index_knows_is_announced_as_timed_out() {
    let mut r = Presence::default();
    r.lost(b"phone", 700);
    assert_eq!(r.settle(1000), 1);
    assert_eq!(
        summary(&r),
        vec![("offline", "online", "timeout", "phone".into(), 0, 700_000)]
    );
    assert_eq!((r.events[0].ts, r.last_seen), (700, Some(700)));
    // A device the record has is left alone.
    let mut r = Presence::default();
    online(&mut r, b"a", 100);
    r.lost(b"a", 50);
    assert_eq!(r.devices[b"a".as_slice()].deadline(), TTL.after(100));
}

#[test]
fn settling_at_most_n_devices_stops_in_time_order() {
    let mut r = Presence::with_rules(Rules {
        device_events: true,
        ..Rules::default()
    });
    for (id, ttl) in [(&b"a"[..], 100), (b"b", 200), (b"c", 300)] {
        r.connect(id, Span(ttl), None, None, 0, MAX).unwrap();
    }
    r.events.clear();
    assert_eq!(r.settle_at_most(1000, 2), 2);
    assert_eq!(r.devices.keys().collect::<Vec<_>>(), [&b"c".to_vec()]);
    assert_eq!(r.settle_at_most(1000, 2), 1);
    assert!(r.devices.is_empty());
    let ts: Vec<Millis> = r.events.iter().map(|e| e.ts).collect();
    assert_eq!(ts, [100, 200, 300]);
}

#[test]
fn device_events_announce_changes_of_a_user_who_stays_online() {
    let mut r = Presence::with_rules(Rules {
        device_events: true,
        ..Rules::default()
    });
    online(&mut r, b"a", 100);
    r.connect(b"b", Span(5000), None, None, 200, MAX).unwrap();
    r.connect(b"a", TTL, None, None, 300, MAX).unwrap(); // a refresh is not a change
    r.settle(1300);
    r.disconnect(b"b", 1400);
    assert_eq!(
        summary(&r),
        vec![
            ("online", "offline", "connect", "a".into(), 1, 100_000),
            ("online", "online", "connect", "b".into(), 2, 100_001),
            ("online", "online", "timeout", "a".into(), 1, 100_002),
            ("offline", "online", "disconnect", "b".into(), 0, 100_003),
        ]
    );
}

#[test]
fn several_timeouts_are_announced_in_deadline_order() {
    let mut r = Presence::with_rules(Rules {
        device_events: true,
        ..Rules::default()
    });
    r.connect(b"late", Span(3000), None, None, 100, MAX)
        .unwrap();
    r.connect(b"early", Span(1000), None, None, 100, MAX)
        .unwrap();
    r.events.clear();
    assert_eq!(r.settle(10_000), 2);
    assert_eq!(
        summary(&r),
        vec![
            ("online", "online", "timeout", "early".into(), 1, 100_002),
            ("offline", "online", "timeout", "late".into(), 0, 100_003),
        ]
    );
    assert_eq!((r.events[0].ts, r.events[1].ts), (1100, 3100));
}

#[test]
fn refusals_and_unknown_devices_announce_nothing() {
    let mut r = Presence::default();
    r.connect(b"a", TTL, None, None, 100, 1).unwrap();
    r.events.clear();
    assert!(r.connect(b"b", TTL, None, None, 100, 1).is_err());
    assert_eq!(r.disconnect(b"x", 200), None);
    assert!(r.events.is_empty());
    assert_eq!(r.seq, 100_000);
}

#[test]
fn settling_is_invisible_to_reads() {
    let mut r = Presence::default();
    online(&mut r, b"a", 100);
    online(&mut r, b"b", 300);
    for now in [200, 1100, 1250, 1300, 5000] {
        let before = r.view(now);
        let mut settled = r.clone();
        settled.settle(now);
        assert_eq!(settled.view(now), before, "at {now}");
    }
}

#[test]
fn heartbeat_of_a_connected_device_keeps_its_ttl() {
    let mut r = Presence::default();
    r.connect(b"d", Span(5000), None, None, 100, MAX).unwrap();
    assert_eq!(r.heartbeat(b"d", None, None, TTL, 200, MAX), Ok(true));
    assert_eq!(r.devices[&b"d".to_vec()].deadline(), 5200);
    assert_eq!(
        r.heartbeat(b"d", Some(Span(300)), None, TTL, 250, MAX),
        Ok(true)
    );
    assert_eq!(r.devices[&b"d".to_vec()].deadline(), 550);
}

#[test]
fn heartbeat_of_an_unknown_device_registers_it() {
    let mut r = Presence::default();
    assert_eq!(r.heartbeat(b"d", None, None, TTL, 100, MAX), Ok(false));
    assert_eq!(r.view(150).status, Status::Online);
    assert_eq!(r.devices[&b"d".to_vec()].ttl, TTL);
    assert_eq!(
        r.heartbeat(b"e", Some(Span(700)), None, TTL, 100, MAX),
        Ok(false)
    );
    assert_eq!(r.devices[&b"e".to_vec()].ttl, Span(700));
}

#[test]
fn max_devices_refuses_new_devices_but_not_heartbeats() {
    let mut r = Presence::default();
    r.connect(b"a", TTL, None, None, 100, 2).unwrap();
    r.connect(b"b", TTL, None, None, 100, 2).unwrap();
    assert_eq!(
        r.connect(b"c", TTL, None, None, 100, 2),
        Err(Refusal::TooManyDevices(2))
    );
    assert_eq!(
        r.heartbeat(b"c", None, None, TTL, 100, 2),
        Err(Refusal::TooManyDevices(2))
    );
    assert_eq!(r.heartbeat(b"a", None, None, TTL, 150, 2), Ok(true));
    assert_eq!(r.connect(b"b", TTL, None, None, 150, 2), Ok(2));
    assert_eq!(r.devices.len(), 2);
}

#[test]
fn expired_devices_do_not_count_toward_max_devices() {
    let mut r = Presence::default();
    r.connect(b"a", Span(100), None, None, 0, 1).unwrap();
    r.settle(100);
    assert_eq!(r.connect(b"b", TTL, None, None, 100, 1), Ok(1));
}

#[test]
fn disconnect_of_the_last_device_makes_the_user_offline_now() {
    let mut r = Presence::default();
    online(&mut r, b"a", 100);
    online(&mut r, b"b", 200);
    assert_eq!(r.disconnect(b"a", 300), Some(1));
    assert_eq!(r.view(300).status, Status::Online);
    assert_eq!(r.view(300).since, Some(100));
    assert_eq!(r.disconnect(b"b", 400), Some(0));
    let view = r.view(400);
    assert_eq!(view.status, Status::Offline);
    assert_eq!(view.last_seen, Some(400));
    assert_eq!(view.since, Some(400));
}

#[test]
fn disconnect_of_an_unknown_device_changes_nothing() {
    let mut r = Presence::default();
    online(&mut r, b"a", 100);
    let before = r.clone();
    assert_eq!(r.disconnect(b"x", 300), None);
    assert_eq!(r, before);
}

#[test]
fn coming_back_after_offline_starts_a_new_since() {
    let mut r = Presence::default();
    online(&mut r, b"a", 100);
    r.disconnect(b"a", 200);
    online(&mut r, b"a", 900);
    assert_eq!(r.view(900).since, Some(900));
    assert_eq!(r.devices[&b"a".to_vec()].connected_at, 900);
}

#[test]
fn reconnecting_after_a_timeout_is_a_new_session() {
    let mut r = Presence::default();
    online(&mut r, b"a", 100);
    assert_eq!(online(&mut r, b"a", 2000), 1);
    assert_eq!(r.devices[&b"a".to_vec()].connected_at, 2000);
    assert_eq!(r.view(2000).since, Some(2000));
}

#[test]
fn the_record_expires_only_while_offline() {
    let mut r = Presence::default();
    assert_eq!(
        r.expires_at(Span(10), 5),
        Some(15),
        "a record of settings alone"
    );
    r.connect(b"a", Span(1000), None, None, 100, MAX).unwrap();
    r.connect(b"b", Span(5000), None, None, 200, MAX).unwrap();
    assert_eq!(r.expires_at(Span(10), 250), None);
    r.disconnect(b"a", 300);
    r.disconnect(b"b", 400);
    assert_eq!(r.expires_at(Span(10), 450), Some(410));
}

#[test]
fn huge_ttls_and_times_do_not_overflow() {
    let d = Device {
        connected_at: 0,
        last_heartbeat: Millis::MAX - 1,
        ttl: Span(Millis::MAX),
        meta: None,
        context: None,
        order: 0,
        ..Device::default()
    };
    assert_eq!(d.deadline(), Millis::MAX);
    let mut r = Presence::default();
    r.devices.insert(b"d".to_vec(), d);
    r.settle(Millis::MAX);
    assert_eq!(r.expires_at(Span(Millis::MAX), 0), Some(Millis::MAX));
}

fn events(r: &mut Presence) -> Vec<(&'static str, &'static str, &'static str, Millis)> {
    let out = r
        .events
        .iter()
        .map(|e| (e.status.as_str(), e.prev.as_str(), e.reason.as_str(), e.ts))
        .collect();
    r.events.clear();
    out
}

fn away_after(ms: Millis) -> Presence {
    Presence::with_rules(Rules {
        away_after: Span(ms),
        ..Rules::default()
    })
}

#[test]
fn a_connected_user_without_activity_goes_away_and_comes_back_with_activity() {
    let mut r = away_after(1000);
    r.connect(b"d", Span(60_000), None, None, 0, MAX).unwrap();
    // Heartbeats keep the connection but are not activity.
    r.heartbeat(b"d", None, None, Span(60_000), 500, MAX)
        .unwrap();
    assert_eq!(r.view(999).status, Status::Online);
    assert_eq!(r.view(1000).status, Status::Away);
    assert_eq!(r.view(1000).since, Some(1000));
    r.settle(1500);
    assert_eq!(
        events(&mut r),
        vec![
            ("online", "offline", "connect", 0),
            ("away", "online", "idle", 1000)
        ]
    );
    r.activity(2000);
    assert_eq!(events(&mut r), vec![("online", "away", "active", 2000)]);
    assert_eq!(r.view(2999).status, Status::Online);
    assert_eq!(r.view(3000).status, Status::Away);
    assert_eq!(r.goes_idle_at(), Some(3000));
    assert_eq!(r.next_change(), Some(3000));
    assert_eq!(r.user_timer(), None, "going idle needs no timer of its own");
}

#[test]
fn connecting_again_is_activity() {
    let mut r = away_after(1000);
    r.connect(b"d", Span(60_000), None, None, 0, MAX).unwrap();
    r.settle(1200);
    r.connect(b"d", Span(60_000), None, None, 1200, MAX)
        .unwrap();
    assert_eq!(events(&mut r)[2], ("online", "away", "active", 1200));
}

#[test]
fn a_manual_status_wins_over_auto_away_and_ends_on_its_own() {
    let mut r = away_after(1000);
    r.connect(b"d", Span(60_000), None, None, 0, MAX).unwrap();
    let busy = Manual {
        status: Status::Busy,
        message: Some("In a meeting".into()),
        until: Some(5000),
    };
    r.set_manual(Some(busy), 100);
    assert_eq!(r.user_timer(), Some(5000));
    let view = r.view(4000);
    assert_eq!((view.status, view.manual), (Status::Busy, true));
    assert_eq!(view.message.as_deref(), Some("In a meeting"));
    r.settle(6000);
    assert_eq!(
        events(&mut r),
        vec![
            ("online", "offline", "connect", 0),
            ("busy", "online", "manual", 100),
            // Idle long before the manual status ended: away at once, no longer busy.
            ("away", "busy", "expired", 5000),
        ]
    );
    assert!(r.manual.is_none());
}

#[test]
fn a_manual_status_is_kept_while_offline_and_applies_on_return() {
    let mut r = Presence::default();
    let dnd = Manual {
        status: Status::Dnd,
        message: None,
        until: None,
    };
    r.set_manual(Some(dnd), 0);
    assert!(
        events(&mut r).is_empty(),
        "offline either way: nothing to announce"
    );
    assert_eq!(r.view(10).status, Status::Offline);
    assert!(r.view(10).manual);
    r.connect(b"d", Span(1000), None, None, 100, MAX).unwrap();
    assert_eq!(events(&mut r), vec![("dnd", "offline", "connect", 100)]);
    r.set_manual(None, 200);
    assert_eq!(events(&mut r), vec![("online", "dnd", "manual", 200)]);
}

#[test]
fn invisible_looks_offline_to_everyone_else() {
    let mut r = Presence::with_rules(Rules {
        device_events: true,
        ..Rules::default()
    });
    r.connect(b"a", Span(60_000), None, None, 0, MAX).unwrap();
    let invisible = Manual {
        status: Status::Invisible,
        message: None,
        until: None,
    };
    r.set_manual(Some(invisible), 100);
    r.connect(b"b", Span(60_000), None, None, 200, MAX).unwrap();
    r.disconnect(b"b", 300);
    assert_eq!(
        events(&mut r),
        vec![
            ("online", "offline", "connect", 0),
            ("offline", "online", "manual", 100)
        ],
        "going invisible is an ordinary offline event; devices come and go unseen"
    );
    // The trusted view shows the truth.
    assert_eq!(r.view(400).status, Status::Invisible);
    r.disconnect(b"a", 500);
    assert!(
        events(&mut r).is_empty(),
        "leaving while invisible changes nothing visible"
    );
    r.connect(b"a", Span(60_000), None, None, 600, MAX).unwrap();
    r.set_manual(None, 700);
    assert_eq!(events(&mut r), vec![("online", "offline", "manual", 700)]);
}

#[test]
fn changes_that_came_with_time_are_announced_in_the_order_they_came() {
    let mut r = away_after(1000);
    r.connect(b"d", Span(3000), None, None, 0, MAX).unwrap();
    r.settle(10_000);
    assert_eq!(
        events(&mut r),
        vec![
            ("online", "offline", "connect", 0),
            ("away", "online", "idle", 1000),
            ("offline", "away", "timeout", 3000),
        ]
    );
    assert_eq!(
        r.view(10_000).since,
        Some(0),
        "offline since the last heartbeat"
    );
    assert_eq!(r.user_timer(), None);
}

#[test]
fn reads_agree_with_settling_at_every_moment() {
    let mut r = away_after(1000);
    r.connect(b"a", Span(2500), None, None, 0, MAX).unwrap();
    r.set_manual(
        Some(Manual {
            status: Status::Away,
            message: None,
            until: Some(1500),
        }),
        10,
    );
    for now in [0, 999, 1000, 1499, 1500, 2000, 2499, 2500, 9000] {
        let mut settled = r.clone();
        settled.settle(now);
        assert_eq!(settled.view(now), r.view(now), "at {now}");
    }
}

#[test]
fn a_context_belongs_to_a_connected_device_and_leaves_with_it() {
    let mut r = Presence::default();
    r.connect(b"phone", Span(1000), None, None, 0, MAX).unwrap();
    r.connect(b"web", Span(5000), None, None, 0, MAX).unwrap();
    assert!(r.set_context(b"phone", Some(b"chat:42".to_vec())));
    assert!(!r.set_context(b"tablet", Some(b"chat:42".to_vec())));
    assert!(r.in_context(b"chat:42", 500));
    assert!(!r.in_context(b"chat:7", 500));
    // Past its deadline the device is gone, and its context with it.
    assert!(!r.in_context(b"chat:42", 1000));
    assert!(r.set_context(b"web", Some(b"chat:7".to_vec())));
    r.disconnect(b"web", 600);
    assert!(!r.in_context(b"chat:7", 600));
    assert!(r.set_context(b"phone", None));
    assert!(!r.in_context(b"chat:42", 700));
}

fn with_grace(ms: Millis) -> Presence {
    Presence::with_rules(Rules {
        grace: Span(ms),
        ..Rules::default()
    })
}

#[test]
fn scopes_last_while_online_including_grace() {
    let mut r = with_grace(500);
    let scopes = vec![b"b".to_vec(), b"a".to_vec(), b"b".to_vec()];
    r.connect(b"d", Span(60_000), None, Some(scopes), 0, MAX)
        .unwrap();
    assert_eq!(r.scopes, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(r.listed(), Some(0));
    r.activity(50);
    assert_eq!(r.listed(), Some(50));
    r.disconnect(b"d", 100);
    assert_eq!(r.scopes.len(), 2, "kept during the grace period");
    assert_eq!(r.listed(), Some(50));
    r.settle(600);
    assert!(r.scopes.is_empty());
    assert_eq!(r.listed(), None);
}

#[test]
fn a_device_back_within_grace_publishes_nothing_and_keeps_since() {
    let mut r = with_grace(500);
    r.connect(b"d", Span(60_000), None, None, 0, MAX).unwrap();
    r.disconnect(b"d", 100);
    // Reads during the grace period show the user still online.
    assert_eq!(r.view(300).status, Status::Online);
    assert_eq!(r.user_timer(), Some(600));
    r.settle(400);
    r.connect(b"d", Span(60_000), None, None, 400, MAX).unwrap();
    assert_eq!(events(&mut r), vec![("online", "offline", "connect", 0)]);
    assert_eq!(r.view(2000).since, Some(0));
    assert!(r.leaving.is_none());
}

#[test]
fn without_a_return_the_user_goes_offline_when_grace_ends() {
    let mut r = with_grace(500);
    r.connect(b"d", Span(60_000), None, None, 0, MAX).unwrap();
    r.disconnect(b"d", 100);
    assert_eq!(r.view(600).status, Status::Offline);
    r.settle(700);
    let e = &r.events[1];
    assert_eq!(
        (e.status, e.reason, e.ts, e.last_seen),
        (Status::Offline, Reason::Disconnect, 600, Some(100))
    );
    assert_eq!(
        r.view(700).since,
        Some(100),
        "offline since the moment the last device left"
    );
    assert_eq!(r.view(700).last_seen, Some(100));
}

#[test]
fn a_timeout_waits_for_grace_too() {
    let mut r = with_grace(500);
    r.connect(b"d", Span(1000), None, None, 0, MAX).unwrap();
    r.settle(1200);
    assert_eq!(r.view(1200).status, Status::Online);
    r.settle(1600);
    let e = &r.events[1];
    assert_eq!(
        (e.status, e.reason, e.ts, e.last_seen),
        (Status::Offline, Reason::Timeout, 1500, Some(0))
    );
}

#[test]
fn privacy_rules_decide_what_another_user_sees() {
    let mut r = Presence::default();
    r.connect(b"d", Span(60_000), None, None, 100, MAX).unwrap();
    r.disconnect(b"d", 200);
    r.connect(b"d", Span(60_000), None, None, 300, MAX).unwrap();
    let everyone = Privacy::default();
    let contacts_only = Privacy {
        online: Audience::Contacts,
        last_seen: Audience::Contacts,
    };
    assert_eq!(r.view_for(400, everyone, false), r.view(400));
    assert_eq!(r.view_for(400, contacts_only, true), r.view(400));
    let hidden = r.view_for(400, contacts_only, false);
    assert_eq!((hidden.status, hidden.devices), (Status::Offline, 0));
    assert_eq!(hidden.last_seen, None);
    let seen_only = Privacy {
        online: Audience::Nobody,
        last_seen: Audience::Everyone,
    };
    // The latest departure, nothing of the current session.
    assert_eq!(r.view_for(400, seen_only, true).last_seen, Some(200));
    let online_only = Privacy {
        online: Audience::Everyone,
        last_seen: Audience::Nobody,
    };
    let view = r.view_for(400, online_only, false);
    assert_eq!((view.status, view.last_seen), (Status::Online, None));
}

#[test]
fn others_see_an_invisible_user_as_they_were_when_they_went_invisible() {
    let mut r = Presence::default();
    r.connect(b"d", Span(60_000), None, None, 100, MAX).unwrap();
    let invisible = Manual {
        status: Status::Invisible,
        message: None,
        until: None,
    };
    r.set_manual(Some(invisible), 500);
    r.heartbeat(b"d", None, None, Span(60_000), 900, MAX)
        .unwrap();
    let seen = r.view_for(1000, Privacy::default(), true);
    assert_eq!(
        (seen.status, seen.devices, seen.last_seen),
        (Status::Offline, 0, Some(500))
    );
    assert_eq!(r.view(1000).status, Status::Invisible);
    assert_eq!(r.view(1000).last_seen, Some(900));
}

fn manual(status: Status, message: Option<&str>) -> Option<Manual> {
    Some(Manual {
        status,
        message: message.map(str::to_owned),
        until: None,
    })
}

#[test]
fn events_carry_the_message_the_scopes_and_the_meta_of_a_connect() {
    let mut r = Presence::default();
    let meta = r#"{"os":"ios"}"#.to_string();
    r.connect(
        b"phone",
        TTL,
        Some(meta.clone()),
        Some(vec![b"team".to_vec()]),
        100,
        MAX,
    )
    .unwrap();
    let connect = r.take_events().pop().unwrap();
    assert_eq!(connect.meta.as_deref(), Some(meta.as_str()));
    assert_eq!(connect.scopes, vec![b"team".to_vec()]);
    r.set_manual(manual(Status::Busy, Some("In a meeting")), 200);
    assert_eq!(r.take_events()[0].message.as_deref(), Some("In a meeting"));
    // A META longer than the bound stays out of the event.
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(EVENT_META_MAX));
    r.connect(b"laptop", TTL, Some(big), None, 250, MAX)
        .unwrap();
    r.disconnect(b"laptop", 260);
    // Going offline: the event still names the scopes the user had; then they are gone.
    r.disconnect(b"phone", 300);
    let offline = r.take_events().pop().unwrap();
    assert_eq!(offline.status, Status::Offline);
    assert_eq!(offline.scopes, vec![b"team".to_vec()]);
    assert_eq!(offline.message, None);
    assert!(r.scopes.is_empty());
}

#[test]
fn a_message_only_change_is_announced_while_visible() {
    let mut r = Presence::default();
    online(&mut r, b"phone", 100);
    r.set_manual(manual(Status::Busy, Some("In a meeting")), 200);
    r.take_events();
    r.set_manual(manual(Status::Busy, Some("Lunch")), 300);
    let events = r.take_events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.status, e.prev, e.reason),
        (Status::Busy, Status::Busy, Reason::Manual)
    );
    assert_eq!(e.message.as_deref(), Some("Lunch"));
    // The same message again changes nothing anyone sees.
    r.set_manual(manual(Status::Busy, Some("Lunch")), 400);
    assert!(r.take_events().is_empty());
    // Invisible: nothing others see changes with the message.
    r.set_manual(manual(Status::Invisible, None), 500);
    r.take_events();
    r.set_manual(manual(Status::Invisible, Some("shh")), 600);
    assert!(r.take_events().is_empty());
    // New scopes of a user who stays online are announced too.
    r.set_manual(None, 700);
    r.take_events();
    r.connect(
        b"phone",
        TTL,
        None,
        Some(vec![b"zone:2".to_vec()]),
        800,
        MAX,
    )
    .unwrap();
    let events = r.take_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].scopes, vec![b"zone:2".to_vec()]);
}

#[test]
fn a_manual_status_ends_with_the_session_under_that_rule() {
    let rules = Rules {
        manual_ends_offline: true,
        ..Rules::default()
    };
    let mut r = Presence::with_rules(rules);
    online(&mut r, b"phone", 100);
    r.set_manual(manual(Status::Away, None), 150);
    r.disconnect(b"phone", 200);
    assert_eq!(r.manual, None);
    // Set while offline, it waits for the next session, and ends with it.
    r.set_manual(manual(Status::Busy, None), 250);
    online(&mut r, b"phone", 300);
    assert_eq!(r.view(300).status, Status::Busy);
    r.settle(TTL.after(300));
    assert_eq!(r.manual, None);
    // Kept across sessions by default.
    let mut kept = Presence::default();
    online(&mut kept, b"phone", 100);
    kept.set_manual(manual(Status::Away, None), 150);
    kept.disconnect(b"phone", 200);
    online(&mut kept, b"phone", 300);
    assert_eq!(kept.view(300).status, Status::Away);
}

#[test]
fn activity_ends_a_manual_away_under_that_rule() {
    let rules = Rules {
        activity_ends_away: true,
        ..Rules::default()
    };
    let mut r = Presence::with_rules(rules);
    online(&mut r, b"phone", 100);
    r.set_manual(manual(Status::Away, Some("brb")), 150);
    r.take_events();
    r.activity(200);
    assert_eq!(r.view(200).status, Status::Online);
    let e = r.take_events().pop().unwrap();
    assert_eq!(
        (e.status, e.prev, e.reason),
        (Status::Online, Status::Away, Reason::Active)
    );
    // Busy is not away: activity keeps it.
    r.set_manual(manual(Status::Busy, None), 250);
    r.activity(300);
    assert_eq!(r.view(300).status, Status::Busy);
    // Without the rule, away stays.
    let mut kept = Presence::default();
    online(&mut kept, b"phone", 100);
    kept.set_manual(manual(Status::Away, None), 150);
    kept.activity(200);
    assert_eq!(kept.view(200).status, Status::Away);
}

#[test]
fn last_seen_follows_activity_and_names_the_device_that_left() {
    let mut r = Presence::default();
    online(&mut r, b"phone", 100);
    r.activity(600);
    assert_eq!(r.view(700).last_seen, Some(600));
    // Timed out after its last heartbeat (100) but active later: seen last at 600.
    r.settle(TTL.after(100));
    let view = r.view(TTL.after(100));
    assert_eq!((view.status, view.last_seen), (Status::Offline, Some(600)));
    assert_eq!(view.last_device.as_deref(), Some(&b"phone"[..]));
    online(&mut r, b"laptop", 2000);
    r.disconnect(b"laptop", 2100);
    assert_eq!(r.view(2200).last_device.as_deref(), Some(&b"laptop"[..]));
    // Hidden with last_seen from those who may not see it.
    let hidden = Privacy {
        online: Audience::Everyone,
        last_seen: Audience::Nobody,
    };
    let view = r.view_for(2200, hidden, false);
    assert_eq!((view.last_seen, view.last_device), (None, None));
}

#[test]
fn devices_connected_in_the_same_millisecond_keep_their_order() {
    let mut r = Presence::default();
    for device in [&b"z"[..], b"a", b"m"] {
        r.connect(device, TTL, None, None, 100, MAX).unwrap();
    }
    let mut order: Vec<(&Vec<u8>, &Device)> = r.devices.iter().collect();
    order.sort_by_key(|(id, d)| (d.connected_at, d.order, id.as_slice()));
    let ids: Vec<&[u8]> = order.iter().map(|(id, _)| id.as_slice()).collect();
    assert_eq!(ids, vec![&b"z"[..], b"a", b"m"]);
}

#[test]
fn an_event_as_each_viewer_sees_it() {
    let mut r = Presence::default();
    online(&mut r, b"phone", 100);
    r.set_manual(manual(Status::Busy, Some("Focus")), 150);
    r.disconnect(b"phone", 200);
    let events = r.take_events();
    let (busy, gone) = (&events[1], &events[2]);
    let rules = |online, last_seen| Privacy { online, last_seen };
    use Audience::{Contacts, Everyone, Nobody};
    // Who may see them online sees everything (but a hidden last_seen).
    assert_eq!(
        busy.as_seen_by(rules(Everyone, Everyone), false).as_ref(),
        Some(busy)
    );
    let seen = gone.as_seen_by(rules(Contacts, Nobody), true).unwrap();
    assert_eq!((seen.status, seen.last_seen), (Status::Offline, None));
    // Anyone else: only the departure, as offline to offline, where LASTSEEN admits them.
    assert_eq!(busy.as_seen_by(rules(Contacts, Everyone), false), None);
    let seen = gone.as_seen_by(rules(Contacts, Everyone), false).unwrap();
    assert_eq!(
        (seen.status, seen.prev, seen.devices),
        (Status::Offline, Status::Offline, 0)
    );
    assert_eq!((seen.last_seen, seen.message.clone()), (Some(200), None));
    assert!(seen.device.is_empty() && seen.scopes.is_empty());
    assert_eq!(gone.as_seen_by(rules(Nobody, Contacts), false), None);
}

//! What the applications the module replaces need, with no presence logic of their own (the
//! README's "Applications" section): events that carry what a contact list shows, privacy-aware
//! fan-out in one call, session rules, read-back of scopes and the last device, and the smaller
//! contracts (retention forever, META on HEARTBEAT, DEVICES order, RESP3 in Lua, last_seen from
//! activity).

mod common;

use common::*;
use redis::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn get(con: &mut redis::Connection, user: &str) -> BTreeMap<String, Value> {
    map(&run(con, &["PRESENCE.GET", user]).unwrap())
}

/// The events of `user` only (the global channel carries every test's users when the tests share
/// a server through REDIS_URL).
fn own_events(srv: &Server, user: &str) -> Subscriber {
    let channel = format!("presence:{{{user}}}");
    Subscriber::new(srv, "SSUBSCRIBE", &[channel.as_bytes()])
}

fn json(v: &Value) -> serde_json::Value {
    serde_json::from_slice(&bytes(v)).expect("JSON")
}

/// FANOUT's reply as viewer → JSON (None for nil).
fn fanout(con: &mut redis::Connection, args: &[&str]) -> Vec<(String, Option<serde_json::Value>)> {
    let mut call = vec!["PRESENCE.FANOUT"];
    call.extend(args);
    array(&run(con, &call).unwrap())
        .iter()
        .map(|pair| {
            let pair = array(pair);
            let seen = match &pair[1] {
                Value::Nil => None,
                other => Some(json(other)),
            };
            (text(&pair[0]), seen)
        })
        .collect()
}

#[test]
fn events_carry_message_scopes_and_meta_and_a_message_change_is_announced() {
    on_each_server(&[], |srv| {
        let user = unique("dash");
        let mut events = own_events(srv, &user);
        let mut con = srv.con();
        let meta = r#"{"os":"ios","app":"3.2"}"#;
        run(
            &mut con,
            &[
                "PRESENCE.ONLINE",
                &user,
                "phone",
                "META",
                meta,
                "SCOPE",
                "zone:7",
                "org:2",
            ],
        )
        .unwrap();
        run(
            &mut con,
            &["PRESENCE.STATUS", &user, "busy", "MESSAGE", "In a meeting"],
        )
        .unwrap();
        run(
            &mut con,
            &["PRESENCE.STATUS", &user, "busy", "MESSAGE", "Lunch"],
        )
        .unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
        let got = events.take(4, WAIT);
        assert_eq!(got.len(), 4);
        let connect = &got[0].payload;
        assert_eq!(
            connect["meta"],
            serde_json::json!({"os": "ios", "app": "3.2"})
        );
        assert_eq!(connect["scopes"], serde_json::json!(["org:2", "zone:7"]));
        assert_eq!(got[1].str("message"), "In a meeting");
        // Busy to busy with another message: announced, with the new message.
        assert_eq!((got[2].str("status"), got[2].str("prev")), ("busy", "busy"));
        assert_eq!(got[2].str("message"), "Lunch");
        assert!(got[2].int("seq") > got[1].int("seq"));
        // Going offline: no message, and the scopes they left.
        assert_eq!(got[3].str("status"), "offline");
        assert_eq!(got[3].payload["message"], serde_json::Value::Null);
        assert_eq!(
            got[3].payload["scopes"],
            serde_json::json!(["org:2", "zone:7"])
        );
        assert!(got[1..].iter().all(|m| m.payload.get("meta").is_none()));
        // A META over 1024 bytes stays out of the event.
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(1100));
        run(
            &mut con,
            &["PRESENCE.ONLINE", &user, "laptop", "META", &big],
        )
        .unwrap();
        let got = events.take(1, WAIT);
        assert_eq!(got[0].str("reason"), "connect");
        assert!(got[0].payload.get("meta").is_none());
    });
}

#[test]
fn fanout_tells_each_contact_what_they_may_see_in_one_call() {
    on_each_server(&[], |srv| {
        let user = unique("alice");
        let (friend, stranger) = (unique("friend"), unique("stranger"));
        let mut events = own_events(srv, &user);
        let mut con = srv.con();
        run(&mut con, &["PRESENCE.CONTACTS", &user, "ADD", &friend]).unwrap();
        run(&mut con, &["PRESENCE.PRIVACY", &user, "ONLINE", "contacts"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
        run(
            &mut con,
            &["PRESENCE.STATUS", &user, "dnd", "MESSAGE", "Focus"],
        )
        .unwrap();

        // Now: the contact sees dnd and the message; the stranger sees offline, nothing more.
        let now = fanout(&mut con, &[&user, "VIEWERS", &friend, &stranger, &user]);
        let seen: Vec<&str> = now.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(seen, [friend.as_str(), stranger.as_str(), user.as_str()]);
        let friend_view = now[0].1.clone().unwrap();
        assert_eq!(
            (
                friend_view["status"].as_str(),
                friend_view["message"].as_str()
            ),
            (Some("dnd"), Some("Focus"))
        );
        let stranger_view = now[1].1.clone().unwrap();
        assert_eq!(stranger_view["status"], "offline");
        assert_eq!(stranger_view["devices"], 0);
        assert_eq!(stranger_view["message"], serde_json::Value::Null);
        assert_eq!(now[2].1.clone().unwrap()["status"], "dnd");
        // CONTACTS: the user's contacts, each one a contact.
        let contacts = fanout(&mut con, &[&user, "CONTACTS"]);
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0].0, friend);
        assert_eq!(contacts[0].1.clone().unwrap()["status"], "dnd");

        // An event, as each viewer sees it: the status change reaches the contact only; the
        // departure reaches both (the stranger sees last_seen move), offline all along for them.
        let got = events.take(2, WAIT);
        let dnd = got[1].payload.to_string();
        let per_viewer = fanout(
            &mut con,
            &[&user, "EVENT", &dnd, "VIEWERS", &friend, &stranger],
        );
        assert_eq!(per_viewer[0].1.clone().unwrap()["status"], "dnd");
        assert_eq!(per_viewer[1].1, None);
        run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
        let gone = events.take(1, WAIT)[0].payload.to_string();
        let per_viewer = fanout(
            &mut con,
            &[&user, "EVENT", &gone, "VIEWERS", &friend, &stranger],
        );
        let to_friend = per_viewer[0].1.clone().unwrap();
        assert_eq!(
            (to_friend["status"].as_str(), to_friend["prev"].as_str()),
            (Some("offline"), Some("dnd"))
        );
        let to_stranger = per_viewer[1].1.clone().unwrap();
        assert_eq!(
            (to_stranger["status"].as_str(), to_stranger["prev"].as_str()),
            (Some("offline"), Some("offline"))
        );
        assert_eq!(to_stranger["last_seen"], to_friend["last_seen"]);
        assert_eq!(to_stranger["device"], "");
        // LASTSEEN nobody: the stranger gets nothing at all, the contact no last_seen.
        run(&mut con, &["PRESENCE.PRIVACY", &user, "LASTSEEN", "nobody"]).unwrap();
        let per_viewer = fanout(
            &mut con,
            &[&user, "EVENT", &gone, "VIEWERS", &friend, &stranger],
        );
        assert_eq!(
            per_viewer[0].1.clone().unwrap()["last_seen"],
            serde_json::Value::Null
        );
        assert_eq!(per_viewer[1].1, None);
        // Another user's event, or no event at all, is refused.
        let other = unique("other");
        let forged = gone.replace(&user, &other);
        let e = run(
            &mut con,
            &["PRESENCE.FANOUT", &user, "EVENT", &forged, "CONTACTS"],
        )
        .unwrap_err();
        assert!(
            e.contains("EVENT must be an event payload of this user"),
            "{e}"
        );
        let e = run(
            &mut con,
            &["PRESENCE.FANOUT", &user, "EVENT", "{}", "CONTACTS"],
        )
        .unwrap_err();
        assert!(e.contains("EVENT must be"), "{e}");
    });
}

#[test]
fn server_wide_privacy_defaults_apply_to_users_without_rules() {
    on_each_server(&["privacy-online", "contacts"], |srv| {
        let mut con = srv.con();
        let (user, friend, stranger) = (unique("u"), unique("f"), unique("s"));
        run(&mut con, &["PRESENCE.CONTACTS", &user, "ADD", &friend]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
        let as_seen = |con: &mut redis::Connection, viewer: &str| {
            text(&map(&run(con, &["PRESENCE.GET", &user, "VIEWER", viewer]).unwrap())["status"])
        };
        assert_eq!(as_seen(&mut con, &friend), "online");
        assert_eq!(as_seen(&mut con, &stranger), "offline");
        let rules = map(&run(&mut con, &["PRESENCE.PRIVACY", &user]).unwrap());
        assert_eq!(text(&rules["online"]), "contacts");
        // A rule of the user's own wins over the default.
        run(&mut con, &["PRESENCE.PRIVACY", &user, "ONLINE", "everyone"]).unwrap();
        assert_eq!(as_seen(&mut con, &stranger), "online");
        // Only the three words are accepted.
        let e = run(
            &mut con,
            &["CONFIG", "SET", "presence.privacy-lastseen", "friends"],
        )
        .unwrap_err();
        assert!(e.contains("must be everyone or contacts or nobody"), "{e}");
        run(
            &mut con,
            &["CONFIG", "SET", "presence.privacy-lastseen", "nobody"],
        )
        .unwrap();
        let view = map(&run(&mut con, &["PRESENCE.GET", &user, "VIEWER", &stranger]).unwrap());
        assert_eq!(view["last_seen"], Value::Nil);
        run(
            &mut con,
            &["CONFIG", "SET", "presence.privacy-lastseen", "everyone"],
        )
        .unwrap();
    });
}

#[test]
fn session_rules_end_a_manual_status_with_the_session_and_away_with_activity() {
    on_each_server(
        &["keep-manual-status", "no", "activity-ends-away", "yes"],
        |srv| {
            let mut con = srv.con();
            let user = unique("session");
            run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
            run(&mut con, &["PRESENCE.STATUS", &user, "dnd"]).unwrap();
            run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
            run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
            assert_eq!(text(&get(&mut con, &user)["status"]), "online");
            // A manual away ends with activity, and is announced so.
            let mut events = own_events(srv, &user);
            run(
                &mut con,
                &["PRESENCE.STATUS", &user, "away", "MESSAGE", "brb"],
            )
            .unwrap();
            run(&mut con, &["PRESENCE.HEARTBEAT", &user, "phone", "ACTIVE"]).unwrap();
            let got = events.take(2, WAIT);
            assert_eq!(
                (
                    got[1].str("status"),
                    got[1].str("prev"),
                    got[1].str("reason")
                ),
                ("online", "away", "active")
            );
            let g = get(&mut con, &user);
            assert_eq!(
                (text(&g["status"]), int(&g["manual"])),
                ("online".into(), 0)
            );
            // Busy is not ended by activity.
            run(&mut con, &["PRESENCE.STATUS", &user, "busy"]).unwrap();
            run(&mut con, &["PRESENCE.ACTIVITY", &user]).unwrap();
            assert_eq!(text(&get(&mut con, &user)["status"]), "busy");
        },
    );
    // The defaults keep a manual status across sessions, and activity does not end away.
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("kept");
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.STATUS", &user, "away"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
        run(&mut con, &["PRESENCE.ACTIVITY", &user]).unwrap();
        assert_eq!(text(&get(&mut con, &user)["status"]), "away");
    });
}

#[test]
fn scopes_and_the_last_device_read_back() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("zones");
        run(
            &mut con,
            &[
                "PRESENCE.ONLINE",
                &user,
                "phone",
                "SCOPE",
                "zone:1",
                "org:9",
            ],
        )
        .unwrap();
        let scopes = |v: &Value| array(v).iter().map(text).collect::<Vec<_>>();
        assert_eq!(scopes(&get(&mut con, &user)["scopes"]), ["org:9", "zone:1"]);
        let page = array(
            &run(
                &mut con,
                &["PRESENCE.LIST", "SCOPE", "zone:1", "WITHSCOPES"],
            )
            .unwrap(),
        );
        let rows = array(&page[1]);
        let row = rows
            .iter()
            .map(array)
            .find(|r| text(&r[0]) == user)
            .expect("listed");
        assert_eq!(scopes(&row[3]), ["org:9", "zone:1"]);
        // Without WITHSCOPES, rows keep their three elements.
        let page = array(&run(&mut con, &["PRESENCE.LIST", "SCOPE", "zone:1"]).unwrap());
        assert!(array(&page[1]).iter().all(|r| array(r).len() == 3));

        run(&mut con, &["PRESENCE.ONLINE", &user, "laptop"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "laptop"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
        let g = get(&mut con, &user);
        assert_eq!(text(&g["last_device"]), "phone");
        assert!(array(&g["scopes"]).is_empty());
        let rows = array(
            &run(
                &mut con,
                &["PRESENCE.BULK", &user, "VIEWER", "v", "WITHDEVICE"],
            )
            .unwrap(),
        );
        let row = array(&rows[0]);
        assert_eq!((row.len(), text(&row[4])), (5, "phone".to_string()));
        assert_eq!(int(&row[2]), int(&g["last_seen"]));
        // The user's channel, named by the module, braces and all: events arrive on it.
        for id in [unique("plain"), format!("{{org:7}}{}", unique("ann"))] {
            let channel = bytes(&run(&mut con, &["PRESENCE.CHANNEL", &id]).unwrap());
            let mut own = Subscriber::new(srv, "SSUBSCRIBE", &[&channel]);
            run(&mut con, &["PRESENCE.ONLINE", &id, "d"]).unwrap();
            let got = own.take(1, WAIT);
            assert_eq!(
                got.len(),
                1,
                "no event on {}",
                String::from_utf8_lossy(&channel)
            );
            assert_eq!(got[0].str("user"), id);
        }
        assert_eq!(
            text(&run(&mut con, &["PRESENCE.CHANNEL", "alice"]).unwrap()),
            "presence:{alice}"
        );
    });
}

#[test]
fn heartbeat_restores_meta_and_devices_keep_their_connection_order() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("meta");
        let meta = r#"{"os":"android"}"#;
        // A heartbeat for an unknown device registers it, with the META it carries.
        let known = int(&run(
            &mut con,
            &["PRESENCE.HEARTBEAT", &user, "phone", "META", meta],
        )
        .unwrap());
        assert_eq!(known, 0);
        let d = map(&array(&run(&mut con, &["PRESENCE.DEVICES", &user]).unwrap())[0]);
        assert_eq!(text(&d["meta"]), meta);
        // In one transaction the devices connect within the same millisecond or so: DEVICES
        // lists them in the order they connected, whatever their ids.
        let other = unique("order");
        let mut pipe = redis::pipe();
        pipe.atomic();
        for device in ["z", "a", "m"] {
            pipe.cmd("PRESENCE.ONLINE").arg(&other).arg(device).ignore();
        }
        let () = pipe.query(&mut con).unwrap();
        let listed: Vec<String> = array(&run(&mut con, &["PRESENCE.DEVICES", &other]).unwrap())
            .iter()
            .map(|d| text(&map(d)["device"]))
            .collect();
        assert_eq!(listed, ["z", "a", "m"]);
    });
}

#[test]
fn last_seen_follows_activity_and_retention_zero_keeps_records_forever() {
    on_each_server(&["retention", "0"], |srv| {
        let mut con = srv.con();
        let user = unique("forever");
        run(&mut con, &["PRESENCE.ONLINE", &user, "phone"]).unwrap();
        let connected = int(&get(&mut con, &user)["last_seen"]);
        assert!(wait_until(WAIT, || epoch_ms() > connected + 5));
        run(&mut con, &["PRESENCE.ACTIVITY", &user, "phone"]).unwrap();
        let g = get(&mut con, &user);
        assert_eq!(int(&g["last_seen"]), int(&g["last_active"]));
        assert!(int(&g["last_seen"]) > connected);
        run(&mut con, &["PRESENCE.OFFLINE", &user, "phone"]).unwrap();
        let key = format!("presence:{{{user}}}");
        assert_eq!(int(&run(&mut con, &["PTTL", &key]).unwrap()), -1, "no TTL");
    });
}

#[test]
fn lua_scripts_under_resp3_keep_every_field() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("lua");
        // A user never seen has nil times: in the script they are false, so the fields stay.
        let script = "redis.setresp(3); local r = redis.call('PRESENCE.GET', KEYS[1]); \
                      local n = 0; for _ in pairs(r['map']) do n = n + 1 end; \
                      return {n, type(r['map']['last_seen'])}";
        let reply = array(&run(&mut con, &["EVAL", script, "1", &user]).unwrap());
        assert_eq!(int(&reply[0]), 10);
        assert_eq!(text(&reply[1]), "boolean");
        // BULK rows keep their length too.
        let script = "redis.setresp(3); local r = redis.call('PRESENCE.BULK', KEYS[1]); \
                      return #r[1]";
        assert_eq!(
            int(&run(&mut con, &["EVAL", script, "1", &user]).unwrap()),
            4
        );
        // Outside scripts a nil stays nil.
        assert_eq!(get(&mut con, &user)["last_seen"], Value::Nil);
    });
}

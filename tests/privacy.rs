//! Privacy on real servers: rules, contacts, and what a VIEWER sees through GET and BULK.

mod common;

use common::*;
use redis::Value;

fn seen(con: &mut redis::Connection, user: &str, viewer: &str) -> (String, i64, Value) {
    let g = map(&run(con, &["PRESENCE.GET", user, "VIEWER", viewer]).unwrap());
    (
        text(&g["status"]),
        int(&g["devices"]),
        g["last_seen"].clone(),
    )
}

#[test]
fn rules_and_contacts_decide_what_a_viewer_sees() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let (user, friend, stranger) = (unique("priv"), unique("friend"), unique("stranger"));
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "d"]).unwrap();
        let left = int(&map(&run(&mut con, &["PRESENCE.GET", &user]).unwrap())["last_seen"]);
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();

        // Defaults: everyone sees everything.
        let rules = map(&run(&mut con, &["PRESENCE.PRIVACY", &user]).unwrap());
        assert_eq!(
            (text(&rules["online"]), text(&rules["lastseen"])),
            ("everyone".into(), "everyone".into())
        );
        assert_eq!(seen(&mut con, &user, &stranger).0, "online");

        assert_eq!(
            run(
                &mut con,
                &[
                    "PRESENCE.PRIVACY",
                    &user,
                    "ONLINE",
                    "contacts",
                    "LASTSEEN",
                    "contacts"
                ]
            )
            .unwrap(),
            Value::Okay
        );
        assert_eq!(
            int(&run(
                &mut con,
                &["PRESENCE.CONTACTS", &user, "ADD", &friend, &friend]
            )
            .unwrap()),
            1
        );
        let list = array(&run(&mut con, &["PRESENCE.CONTACTS", &user, "LIST"]).unwrap());
        assert_eq!(
            list.iter().map(text).collect::<Vec<_>>(),
            vec![friend.clone()]
        );

        assert_eq!(seen(&mut con, &user, &friend).0, "online");
        assert_eq!(
            seen(&mut con, &user, &stranger),
            ("offline".into(), 0, Value::Nil)
        );
        // The user themself, and the trusted application (no VIEWER), see the truth.
        assert_eq!(seen(&mut con, &user, &user).0, "online");
        assert_eq!(
            text(&map(&run(&mut con, &["PRESENCE.GET", &user]).unwrap())["status"]),
            "online"
        );

        // Last seen for everyone, online for nobody: the latest departure, nothing of the session.
        run(
            &mut con,
            &[
                "PRESENCE.PRIVACY",
                &user,
                "ONLINE",
                "nobody",
                "LASTSEEN",
                "everyone",
            ],
        )
        .unwrap();
        assert_eq!(
            seen(&mut con, &user, &friend),
            ("offline".into(), 0, Value::Int(left))
        );

        // BULK takes the viewer before the users.
        let rows = array(
            &run(
                &mut con,
                &["PRESENCE.BULK", "VIEWER", &stranger, &user, &friend],
            )
            .unwrap(),
        );
        let row = array(&rows[0]);
        assert_eq!(
            (text(&row[1]), row[2].clone(), int(&row[3])),
            ("offline".into(), Value::Int(left), 0)
        );
        let keys = array(
            &run(
                &mut con,
                &[
                    "COMMAND",
                    "GETKEYS",
                    "PRESENCE.BULK",
                    "VIEWER",
                    "v",
                    "a",
                    "b",
                ],
            )
            .unwrap(),
        );
        assert_eq!(keys.iter().map(text).collect::<Vec<_>>(), ["a", "b"]);

        assert_eq!(
            int(&run(
                &mut con,
                &["PRESENCE.CONTACTS", &user, "REM", &friend, "nobody"]
            )
            .unwrap()),
            1
        );
        run(&mut con, &["PRESENCE.PRIVACY", &user, "ONLINE", "contacts"]).unwrap();
        assert_eq!(seen(&mut con, &user, &friend).0, "offline");
    });
}

#[test]
fn invisible_users_look_offline_to_every_viewer() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let (user, friend) = (unique("hid"), unique("pal"));
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        run(&mut con, &["PRESENCE.STATUS", &user, "invisible"]).unwrap();
        let went = int(&map(&run(&mut con, &["PRESENCE.GET", &user]).unwrap())["last_seen"]);
        std::thread::sleep(std::time::Duration::from_millis(5));
        run(&mut con, &["PRESENCE.HEARTBEAT", &user, "d"]).unwrap();
        assert_eq!(
            seen(&mut con, &user, &friend),
            ("offline".into(), 0, Value::Int(went))
        );
        assert_eq!(seen(&mut con, &user, &user).0, "invisible");
    });
}

#[test]
fn settings_outlive_the_record_and_bad_input_is_refused() {
    on_each_server(&["retention", "1000"], |srv| {
        let mut con = srv.con();
        let user = unique("keep");
        run(&mut con, &["PRESENCE.PRIVACY", &user, "LASTSEEN", "nobody"]).unwrap();
        run(&mut con, &["PRESENCE.CONTACTS", &user, "ADD", "x"]).unwrap();
        run(&mut con, &["PRESENCE.ONLINE", &user, "d"]).unwrap();
        run(&mut con, &["PRESENCE.OFFLINE", &user, "d"]).unwrap();
        assert!(wait_until(std::time::Duration::from_secs(5), || {
            map(&run(&mut con, &["PRESENCE.GET", &user]).unwrap())["since"] == Value::Nil
        }));
        let rules = map(&run(&mut con, &["PRESENCE.PRIVACY", &user]).unwrap());
        assert_eq!(text(&rules["lastseen"]), "nobody");
        assert_eq!(
            array(&run(&mut con, &["PRESENCE.CONTACTS", &user, "LIST"]).unwrap()).len(),
            1
        );

        let before = snapshot_for(&mut con, &user);
        assert_refused(
            &mut con,
            &[
                (
                    vec!["PRESENCE.PRIVACY", &user, "ONLINE", "friends"],
                    "ONLINE must be everyone, contacts or nobody",
                ),
                (
                    vec!["PRESENCE.PRIVACY", &user, "SHOW", "all"],
                    "unknown option 'SHOW'",
                ),
                (
                    vec!["PRESENCE.PRIVACY", &user, "ONLINE"],
                    "ONLINE needs a value",
                ),
                (
                    vec!["PRESENCE.CONTACTS", &user, "KEEP", "x"],
                    "unknown action 'KEEP'",
                ),
                (
                    vec!["PRESENCE.CONTACTS", &user, "ADD"],
                    "wrong number of arguments",
                ),
                (
                    vec!["PRESENCE.CONTACTS", &user, "ADD", ""],
                    "contact id must be 1 to 512 bytes",
                ),
                (
                    vec!["PRESENCE.CONTACTS", &user, "LIST", "x"],
                    "wrong number of arguments",
                ),
                (
                    vec!["PRESENCE.GET", &user, "VIEWER", ""],
                    "viewer id must be 1 to 512 bytes",
                ),
            ],
        );
        assert_eq!(snapshot_for(&mut con, &user), before);
    });
}

#[test]
fn contacts_are_binary_safe() {
    on_each_server(&[], |srv| {
        let mut con = srv.con();
        let user = unique("bin");
        let contacts: [&[u8]; 3] = [b"nul\0byte", b"line\r\nbreak", b"\xff\xfe"];
        let mut add: Vec<&[u8]> = vec![b"PRESENCE.CONTACTS", user.as_bytes(), b"ADD"];
        add.extend(contacts);
        assert_eq!(int(&call(&mut con, &add).unwrap()), 3);
        let mut listed: Vec<Vec<u8>> =
            array(&call(&mut con, &[b"PRESENCE.CONTACTS", user.as_bytes(), b"LIST"]).unwrap())
                .iter()
                .map(bytes)
                .collect();
        listed.sort();
        let mut expected: Vec<Vec<u8>> = contacts.iter().map(|c| c.to_vec()).collect();
        expected.sort();
        assert_eq!(listed, expected);
    });
}

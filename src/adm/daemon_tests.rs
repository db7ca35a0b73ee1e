use super::*;

#[test]
fn list_daemon_lines() {
    let v: DaemonReply = serde_json::from_str(
        r#"{"ok":true,"daemons":[
              {"state":"backup","mcast_ifn":"mgmt0","syncid":2,"sync_maxlen":1472,
               "mcast_group":"224.0.0.81","mcast_port":8848,"mcast_ttl":1},
              {"state":"master","mcast_ifn":"eth0","syncid":1,"sync_maxlen":1472,
               "mcast_group":"224.0.0.81","mcast_port":8848,"mcast_ttl":1}]}"#,
    )
    .unwrap();
    assert_eq!(
            daemons(&v),
            "master sync daemon (mcast=eth0, syncid=1, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
             backup sync daemon (mcast=mgmt0, syncid=2, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
        );
    assert_eq!(daemons(&DaemonReply::default()), "");
}

//! The control protocol: one JSON object per line in, one per line out.
//! Requests are [`Request`], parsed by [`parse_request`]; success is
//! `{"ok": true, ...}`, failure `{"error": {"code": "...", "message":
//! "..."}}` ([`CtlError`]). The reference is docs/configuration.md, "Control socket reference".

use super::*;

/// Largest request line accepted.
pub const MAX_REQUEST: usize = 1 << 20;

/// A service named by protocol, address and port
/// (`{"proto": "tcp", "vip": "10.0.0.100", "port": 80}`), or by firewall
/// mark (`{"fwmark": 1}`, `"af": "inet6"` for an IPv6 one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SvcRefRepr", into = "SvcRefRepr")]
pub struct SvcRef(ServiceKey);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SvcRefRepr {
    #[serde(skip_serializing_if = "Option::is_none")]
    proto: Option<Proto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fwmark: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    af: Option<String>,
}

impl From<SvcRef> for SvcRefRepr {
    fn from(r: SvcRef) -> SvcRefRepr {
        let k = r.0;
        if k.fwmark != 0 {
            SvcRefRepr {
                proto: None,
                vip: None,
                port: None,
                fwmark: Some(k.fwmark),
                af: k.vip.is_ipv6().then(|| "inet6".to_string()),
            }
        } else {
            SvcRefRepr {
                proto: Some(k.proto),
                vip: Some(k.vip),
                port: Some(k.port),
                fwmark: None,
                af: None,
            }
        }
    }
}

impl TryFrom<SvcRefRepr> for SvcRef {
    type Error = String;
    fn try_from(r: SvcRefRepr) -> Result<SvcRef, String> {
        let inet6 = match r.af.as_deref() {
            None | Some("inet") => false,
            Some("inet6") => true,
            Some(a) => return Err(format!("af must be \"inet\" or \"inet6\", not {a:?}")),
        };
        match r.fwmark {
            Some(0) => Err("invalid fwmark 0: must be 1..=4294967295".into()),
            Some(mark) => {
                if r.proto.is_some() || r.vip.is_some() || r.port.is_some() {
                    return Err(
                        "a fwmark service is named by its mark alone (no proto/vip/port)".into(),
                    );
                }
                Ok(SvcRef(ServiceKey::fwmark(mark, inet6)))
            }
            None => {
                let (Some(proto), Some(vip), Some(port)) = (r.proto, r.vip, r.port) else {
                    return Err("a service is named by proto, vip and port, or by fwmark".into());
                };
                Ok(SvcRef(ServiceKey::new(proto, vip, port)))
            }
        }
    }
}

impl From<ServiceKey> for SvcRef {
    fn from(k: ServiceKey) -> SvcRef {
        SvcRef(k)
    }
}

impl SvcRef {
    pub fn key(&self) -> ServiceKey {
        self.0
    }
}

/// A real server named by address and port (0 = the service port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestRef {
    pub ip: IpAddr,
    #[serde(default)]
    pub port: u16,
}

/// Every request the socket accepts. Clients written in Rust send these
/// (serialised, they are the JSON lines the socket reads); rvsadm sends
/// what the operator typed as JSON instead where rvsd's refusal of it is
/// the message to show.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness and version.
    Ping {},
    AddService {
        service: ServiceConf,
    },
    /// Change scheduler/persistence of a service; its real servers stay.
    EditService {
        service: ServiceConf,
    },
    DelService {
        service: SvcRef,
    },
    AddDest {
        service: SvcRef,
        dest: DestConf,
    },
    EditDest {
        service: SvcRef,
        dest: DestConf,
    },
    DelDest {
        service: SvcRef,
        dest: DestRef,
    },
    /// Remove every service (ipvsadm -C).
    Clear {},
    /// Services with real servers and counters.
    List {},
    /// Zero traffic counters (ipvsadm -Z), of one service or all.
    Zero {
        #[serde(default)]
        service: Option<SvcRef>,
    },
    /// Connection entries (ipvsadm -L -c).
    Connections {
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Per-worker and per-port counters.
    Stats {},
    SetTimeouts {
        timeouts: TimeoutConf,
    },
    GetTimeouts {},
    /// Replace every service with these, validated whole: all problems are
    /// listed and nothing changes unless all is well. With `fwmark_rules`,
    /// the classifier's rules are replaced in the same step; without, they
    /// stay (ipvsadm -R does not touch the firewall either).
    Load {
        services: Vec<ServiceConf>,
        #[serde(default)]
        fwmark_rules: Option<Vec<FwmarkRule>>,
    },
    /// Replace the fwmark classifier's rules (validated whole; the services
    /// stay).
    SetFwmarkRules {
        rules: Vec<FwmarkRule>,
    },
    /// The configuration as `load` takes it.
    Dump {},
    /// Add a FULLNAT local address to a service's pool.
    AddLaddr {
        service: SvcRef,
        laddr: IpAddr,
    },
    /// Remove a FULLNAT local address (connections using it continue).
    DelLaddr {
        service: SvcRef,
        laddr: IpAddr,
    },
    /// Start a connection sync daemon (ipvsadm --start-daemon,
    /// `IPVS_CMD_NEW_DAEMON`).
    StartDaemon {
        state: crate::sync::Role,
        mcast_ifn: String,
        #[serde(default)]
        syncid: u8,
        #[serde(default)]
        sync_maxlen: u16,
        #[serde(default)]
        mcast_group: Option<std::net::Ipv4Addr>,
        #[serde(default)]
        mcast_port: u16,
        #[serde(default)]
        mcast_ttl: u8,
    },
    /// Stop one (ipvsadm --stop-daemon, `IPVS_CMD_DEL_DAEMON`).
    StopDaemon {
        state: crate::sync::Role,
    },
    /// Running daemons and sync counters (ipvsadm -L --daemon,
    /// `IPVS_CMD_GET_DAEMON`).
    Daemon {},
}

/// Replies are typed where both sides share the type: the server builds
/// it and serialises it, a client reads it back with [`from_reply`].
/// (`list`, `stats`, `connections` and `daemon` are still built as JSON
/// values.)
pub fn to_reply<T: Serialize>(reply: &T) -> Result<Value, CtlError> {
    serde_json::to_value(reply).map_err(|e| CtlError::new(ErrorCode::Io, e.to_string()))
}

/// A typed reply from the JSON the socket answered.
pub fn from_reply<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CtlError> {
    serde_json::from_value(v)
        .map_err(|e| CtlError::new(ErrorCode::BadJson, format!("unexpected reply: {e}")))
}

/// The three timeouts ipvsadm shows and sets, in seconds
/// (`ipvsadm -L --timeout`, `IPVS_CMD_GET_CONFIG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutsView {
    pub tcp: u32,
    pub tcpfin: u32,
    pub udp: u32,
}

/// `get_timeouts`' reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutsReply {
    pub ok: bool,
    pub timeouts: TimeoutsView,
}

/// `ping`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    pub ok: bool,
    pub version: String,
}

/// The stable, machine-readable part of a control error (the `code` of
/// `{"error": {"code": ..., "message": ...}}`); the message is for people
/// (libipvs's texts where ipvsadm has one, which operators' scripts match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    TooLarge,
    BadJson,
    BadRequest,
    UnknownCommand,
    Invalid,
    NotFound,
    Exists,
    Unsupported,
    Busy,
    Timeout,
    NotRunning,
    NoDevice,
    NoAddress,
    Io,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Exists => "exists",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotRunning => "not_running",
            ErrorCode::NoDevice => "no_device",
            ErrorCode::NoAddress => "no_address",
            ErrorCode::Io => "io",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The control error code for a sync daemon errno.
pub(super) fn daemon_code(errno: &str) -> ErrorCode {
    match errno {
        "EEXIST" => ErrorCode::Exists,
        "ESRCH" => ErrorCode::NotRunning,
        "ENODEV" => ErrorCode::NoDevice,
        "EADDRNOTAVAIL" => ErrorCode::NoAddress,
        _ => ErrorCode::Io,
    }
}

/// A control-socket error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub code: ErrorCode,
    pub message: String,
}

impl CtlError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CtlError {
            code,
            message: message.into(),
        }
    }
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }
    pub fn to_json(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// Parse a request line: bad JSON, unknown commands and unknown fields are
/// distinct, clear errors.
pub fn parse_request(line: &str) -> Result<Request, CtlError> {
    if line.len() > MAX_REQUEST {
        return Err(CtlError::new(
            ErrorCode::TooLarge,
            format!("request over {MAX_REQUEST} bytes"),
        ));
    }
    let v: Value =
        serde_json::from_str(line).map_err(|e| CtlError::new(ErrorCode::BadJson, e.to_string()))?;
    let Some(cmd) = v.get("cmd").and_then(Value::as_str) else {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            "request must be an object with a string \"cmd\"",
        ));
    };
    // Commands and their fields are the `Request` enum's alone: serde
    // refuses an unknown field of any command (every variant is a struct
    // variant, so `deny_unknown_fields` covers them all) and names an
    // unknown command in its error. From the text, not
    // from `v`: a `Value` keeps only the last of duplicate keys, so
    // `{"cmd":"ping","cmd":"clear"}` would have cleared everything;
    // deserialising the text rejects any duplicate field.
    serde_json::from_str(line).map_err(|e| {
        // Whether the command itself is unknown: the bare command, without
        // its fields, fails on its tag (and not on a missing field).
        let bare = serde_json::from_value::<Request>(serde_json::json!({ "cmd": cmd }));
        if bare.is_err_and(|b| b.to_string().starts_with("unknown variant")) {
            CtlError::new(
                ErrorCode::UnknownCommand,
                format!("unknown command {cmd:?}"),
            )
        } else {
            CtlError::new(ErrorCode::BadRequest, format!("{cmd}: {e}"))
        }
    })
}

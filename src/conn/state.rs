//! The IPVS TCP state machine (kernel `ip_vs_proto_tcp.c`) and its timeouts.
//!
//! States move on the flags of every packet through the table the kernel
//! uses, indexed by direction: INPUT (client to server), OUTPUT (server
//! replies, seen in NAT and FULLNAT) and INPUT-ONLY (DR and TUN, where replies
//! bypass the director). Each packet re-arms the connection's timer with the
//! timeout of the state it leaves the connection in.

use serde::Serialize;

/// IPVS connection states, in the kernel's order (`IP_VS_TCP_S_*`), plus UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[repr(u8)]
pub enum State {
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
    /// UDP "connections" have one state.
    Udp = 11,
}

pub const N_STATES: usize = 12;

impl State {
    pub fn from_u8(v: u8) -> State {
        use State::*;
        [
            None,
            Established,
            SynSent,
            SynRecv,
            FinWait,
            TimeWait,
            Close,
            CloseWait,
            LastAck,
            Listen,
            SynAck,
            Udp,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(None)
    }
    /// The name `ipvsadm -L -c` prints.
    pub fn name(self) -> &'static str {
        use State::*;
        match self {
            None => "NONE",
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait => "FIN_WAIT",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            SynAck => "SYNACK",
            Udp => "UDP",
        }
    }
    /// Counted in ActiveConn rather than InActConn: the kernel's
    /// `tcp_state_active_table` (ip_vs_proto_tcp.c since Linux 4.8, commit
    /// "ipvs: count pre-established TCP states as active"): ESTABLISHED and
    /// the handshake's SYN_SENT, SYN_RECV and SYNACK. Half-open connections
    /// then weigh on lc/wlc/sed/nq/ovf as established ones do, so a burst of
    /// reconnecting clients is spread instead of piling onto one server.
    pub fn is_active(self) -> bool {
        use State::*;
        matches!(self, Established | SynSent | SynRecv | SynAck)
    }
}

/// Which way a packet travels relative to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to real server.
    In,
    /// Real server to client (NAT/FULLNAT replies).
    Out,
    /// Client to real server on a connection whose replies are never seen.
    InOnly,
}

// The table never moves a connection to NONE or SYNACK.
use State::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// `tcp_states[]`: [direction][event: syn fin ack rst][current state].
#[rustfmt::skip]
const TCP_STATES: [[[State; 11]; 4]; 3] = [
    // INPUT
    [
        /*        sNO sES sSS sSR sFW sTW sCL sCW sLA sLI sSA */
        /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /*fin*/ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        /*syn*/ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        /*fin*/ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /*rst*/ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /*fin*/ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// TCP flags that drive the state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpEvent {
    pub syn: bool,
    pub fin: bool,
    pub ack: bool,
    pub rst: bool,
}

/// The next state after a packet with `ev` flags travelling `dir`
/// (`set_tcp_state`: RST beats SYN beats FIN beats ACK; no flag = no change).
pub fn tcp_next(cur: State, dir: Dir, ev: TcpEvent) -> State {
    let event = if ev.rst {
        3
    } else if ev.syn {
        0
    } else if ev.fin {
        1
    } else if ev.ack {
        2
    } else {
        return cur;
    };
    let d = match dir {
        Dir::In => 0,
        Dir::Out => 1,
        Dir::InOnly => 2,
    };
    let s = cur as usize;
    if s >= 11 {
        return cur;
    }
    TCP_STATES[d][event][s]
}

/// Timeouts in seconds per state (`ipvsadm --set tcp tcpfin udp` changes
/// Established, FinWait and Udp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts(pub [u32; N_STATES]);

impl Default for Timeouts {
    /// The kernel's `tcp_timeouts[]` and `udp_timeouts[]`.
    fn default() -> Self {
        let mut t = [0u32; N_STATES];
        t[State::None as usize] = 2;
        t[State::Established as usize] = 15 * 60;
        t[State::SynSent as usize] = 2 * 60;
        t[State::SynRecv as usize] = 60;
        t[State::FinWait as usize] = 2 * 60;
        t[State::TimeWait as usize] = 2 * 60;
        t[State::Close as usize] = 10;
        t[State::CloseWait as usize] = 60;
        t[State::LastAck as usize] = 30;
        t[State::Listen as usize] = 2 * 60;
        t[State::SynAck as usize] = 120;
        t[State::Udp as usize] = 5 * 60;
        Timeouts(t)
    }
}

impl Timeouts {
    pub fn get(&self, s: State) -> u32 {
        self.0[s as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: TcpEvent = TcpEvent {
        syn: true,
        fin: false,
        ack: false,
        rst: false,
    };
    const SYNACK: TcpEvent = TcpEvent {
        syn: true,
        fin: false,
        ack: true,
        rst: false,
    };
    const ACK: TcpEvent = TcpEvent {
        syn: false,
        fin: false,
        ack: true,
        rst: false,
    };
    const FINACK: TcpEvent = TcpEvent {
        syn: false,
        fin: true,
        ack: true,
        rst: false,
    };
    const RST: TcpEvent = TcpEvent {
        syn: false,
        fin: false,
        ack: false,
        rst: true,
    };

    fn run(steps: &[(Dir, TcpEvent)]) -> Vec<State> {
        let mut s = State::None;
        steps
            .iter()
            .map(|&(d, e)| {
                s = tcp_next(s, d, e);
                s
            })
            .collect()
    }

    /// Every packet that may open a connection (a SYN or SYN+ACK; with
    /// sloppy_tcp also an ACK or FIN without SYN), in both tables a new
    /// connection starts in (NAT's input, DR/TUN's input-only): applying
    /// it again leaves the state it led to. `NewConn::with_first_state`
    /// binds that state and the packet's `on_packet` follows.
    #[test]
    fn opening_packets_are_idempotent() {
        let fin = TcpEvent {
            fin: true,
            ..TcpEvent::default()
        };
        for dir in [Dir::In, Dir::InOnly] {
            for ev in [SYN, SYNACK, ACK, FINACK, fin] {
                let first = tcp_next(State::None, dir, ev);
                assert_eq!(tcp_next(first, dir, ev), first, "{dir:?} {ev:?}");
            }
        }
        // The state a SYN leads to in both: SYN_RECV (active).
        assert_eq!(tcp_next(State::None, Dir::In, SYN), State::SynRecv);
        assert_eq!(tcp_next(State::None, Dir::InOnly, SYN), State::SynRecv);
    }

    #[test]
    fn nat_normal_close_client_first() {
        use Dir::*;
        use State::*;
        let got = run(&[
            (In, SYN),
            (Out, SYNACK),
            (In, ACK),
            (In, FINACK),
            (Out, ACK),
            (Out, FINACK),
            (In, ACK),
        ]);
        assert_eq!(
            got,
            [
                SynRecv,
                SynRecv,
                Established,
                CloseWait,
                CloseWait,
                TimeWait,
                TimeWait
            ]
        );
    }

    #[test]
    fn nat_server_closes_first() {
        use Dir::*;
        use State::*;
        let got = run(&[
            (In, SYN),
            (Out, SYNACK),
            (In, ACK),
            (Out, FINACK),
            (In, FINACK),
            (Out, ACK),
        ]);
        assert_eq!(
            got,
            [SynRecv, SynRecv, Established, FinWait, TimeWait, TimeWait]
        );
    }

    #[test]
    fn simultaneous_close() {
        use Dir::*;
        use State::*;
        let got = run(&[
            (In, SYN),
            (Out, SYNACK),
            (In, ACK),
            (In, FINACK),
            (Out, FINACK),
        ]);
        assert_eq!(got, [SynRecv, SynRecv, Established, CloseWait, TimeWait]);
    }

    #[test]
    fn rst_closes_promptly_from_any_direction() {
        use Dir::*;
        use State::*;
        assert_eq!(
            run(&[(In, SYN), (Out, SYNACK), (In, ACK), (In, RST)]).last(),
            Some(&Close)
        );
        assert_eq!(
            run(&[(In, SYN), (Out, SYNACK), (In, ACK), (Out, RST)]).last(),
            Some(&Close)
        );
        assert_eq!(Timeouts::default().get(Close), 10);
    }

    #[test]
    fn half_open_syn_stays_syn_recv_with_60s() {
        use Dir::*;
        use State::*;
        assert_eq!(run(&[(In, SYN), (In, SYN)]), [SynRecv, SynRecv]);
        assert_eq!(Timeouts::default().get(SynRecv), 60);
    }

    #[test]
    fn input_only_dr_sequence() {
        use Dir::*;
        use State::*;
        let got = run(&[
            (InOnly, SYN),
            (InOnly, ACK),
            (InOnly, FINACK),
            (InOnly, ACK),
        ]);
        assert_eq!(got, [SynRecv, Established, FinWait, FinWait]);
    }

    #[test]
    fn no_flags_no_change_and_kernel_default_timeouts() {
        assert_eq!(
            tcp_next(State::Established, Dir::In, TcpEvent::default()),
            State::Established
        );
        let t = Timeouts::default();
        assert_eq!(
            [
                State::Established,
                State::SynRecv,
                State::FinWait,
                State::TimeWait
            ]
            .map(|s| t.get(s)),
            [900, 60, 120, 120]
        );
        assert_eq!(
            [State::CloseWait, State::LastAck, State::Udp].map(|s| t.get(s)),
            [60, 30, 300]
        );
    }
}

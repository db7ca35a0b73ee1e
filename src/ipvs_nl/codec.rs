//! Netlink and generic-netlink framing: message headers, attributes (nested
//! ones too), and a builder for replies. Byte layouts are the kernel's
//! (`include/uapi/linux/netlink.h`, `genetlink.h`): host byte order for
//! header fields and integer attributes, 4-byte alignment everywhere.
//!
//! Parsing never panics: every length is checked against the buffer, and a
//! malformed message is an [`Error`] the caller turns into `EINVAL`.

/// `struct nlmsghdr` is 16 bytes, `struct genlmsghdr` 4, `struct nlattr` 4.
pub const NLMSG_HDRLEN: usize = 16;
pub const GENL_HDRLEN: usize = 4;
pub const NLA_HDRLEN: usize = 4;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = 0x300;

/// `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` share the type field.
const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000);
pub const NLA_F_NESTED: u16 = 0x8000;

/// Round up to the 4-byte netlink alignment (`NLMSG_ALIGN`, `NLA_ALIGN`).
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("message shorter than its header")]
    Short,
    #[error("nlmsg_len {0} does not fit the buffer")]
    BadLength(u32),
    #[error("malformed attribute")]
    BadAttr,
}

/// `struct nlmsghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlHeader {
    pub len: u32,
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

impl NlHeader {
    pub fn parse(b: &[u8]) -> Result<NlHeader, Error> {
        if b.len() < NLMSG_HDRLEN {
            return Err(Error::Short);
        }
        Ok(NlHeader {
            len: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            ty: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            pid: u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.ty.to_ne_bytes());
        out[6..8].copy_from_slice(&self.flags.to_ne_bytes());
        out[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        out[12..16].copy_from_slice(&self.pid.to_ne_bytes());
    }
}

/// The netlink messages of one datagram, each as its whole bytes (header
/// included). A trailing fragment shorter than a header is ignored, as the
/// kernel's `netlink_rcv_skb` does; a header whose length runs past the
/// buffer is an error.
pub fn split_messages(mut b: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut out = Vec::new();
    while b.len() >= NLMSG_HDRLEN {
        let h = NlHeader::parse(b)?;
        let len = h.len as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(Error::BadLength(h.len));
        }
        out.push(&b[..len]);
        b = &b[align4(len).min(b.len())..];
    }
    Ok(out)
}

/// A generic-netlink request: its netlink header, command, version and
/// top-level attributes.
#[derive(Debug, Clone)]
pub struct GenlMsg<'a> {
    pub hdr: NlHeader,
    pub cmd: u8,
    pub version: u8,
    pub attrs: Attrs<'a>,
}

impl<'a> GenlMsg<'a> {
    /// One whole message (as [`split_messages`] yields it).
    pub fn parse(msg: &'a [u8]) -> Result<GenlMsg<'a>, Error> {
        let hdr = NlHeader::parse(msg)?;
        let len = hdr.len as usize;
        if len > msg.len() || len < NLMSG_HDRLEN + GENL_HDRLEN {
            return Err(Error::BadLength(hdr.len));
        }
        let body = &msg[NLMSG_HDRLEN..len];
        Ok(GenlMsg {
            hdr,
            cmd: body[0],
            version: body[1],
            attrs: Attrs::parse(&body[GENL_HDRLEN..])?,
        })
    }
}

/// Attributes of one level, in order (the last of a repeated type wins, as
/// `nla_parse` does).
#[derive(Debug, Clone, Default)]
pub struct Attrs<'a> {
    list: Vec<(u16, &'a [u8])>,
}

impl<'a> Attrs<'a> {
    pub fn parse(mut b: &'a [u8]) -> Result<Attrs<'a>, Error> {
        let mut list = Vec::new();
        while b.len() >= NLA_HDRLEN {
            let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
            let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
            if len < NLA_HDRLEN || len > b.len() {
                return Err(Error::BadAttr);
            }
            list.push((ty, &b[NLA_HDRLEN..len]));
            b = &b[align4(len).min(b.len())..];
        }
        Ok(Attrs { list })
    }

    /// The payload of attribute `ty`.
    pub fn get(&self, ty: u16) -> Option<&'a [u8]> {
        self.list
            .iter()
            .rev()
            .find(|(t, _)| *t == ty)
            .map(|(_, p)| *p)
    }

    pub fn has(&self, ty: u16) -> bool {
        self.get(ty).is_some()
    }

    /// A nested attribute's attributes.
    pub fn nested(&self, ty: u16) -> Result<Option<Attrs<'a>>, Error> {
        self.get(ty).map(Attrs::parse).transpose()
    }

    /// Attribute `ty` as a host-order u16/u32 (`nla_get_u16`/`u32`): the
    /// payload must be at least that long, as the kernel's policy demands.
    pub fn u16(&self, ty: u16) -> Result<Option<u16>, Error> {
        self.fixed::<2>(ty).map(|o| o.map(u16::from_ne_bytes))
    }
    pub fn u32(&self, ty: u16) -> Result<Option<u32>, Error> {
        self.fixed::<4>(ty).map(|o| o.map(u32::from_ne_bytes))
    }
    pub fn u8(&self, ty: u16) -> Result<Option<u8>, Error> {
        self.fixed::<1>(ty).map(|o| o.map(|b| b[0]))
    }
    /// A network-order u16 (`nla_get_be16`: ports).
    pub fn be16(&self, ty: u16) -> Result<Option<u16>, Error> {
        self.fixed::<2>(ty).map(|o| o.map(u16::from_be_bytes))
    }

    /// The first N bytes of attribute `ty`.
    pub fn fixed<const N: usize>(&self, ty: u16) -> Result<Option<[u8; N]>, Error> {
        match self.get(ty) {
            None => Ok(None),
            Some(p) if p.len() < N => Err(Error::BadAttr),
            Some(p) => {
                let mut a = [0u8; N];
                a.copy_from_slice(&p[..N]);
                Ok(Some(a))
            }
        }
    }

    /// A NUL-terminated string attribute (the NUL and anything after it
    /// dropped; a missing NUL tolerated).
    pub fn string(&self, ty: u16) -> Result<Option<String>, Error> {
        match self.get(ty) {
            None => Ok(None),
            Some(p) => {
                let end = p.iter().position(|&c| c == 0).unwrap_or(p.len());
                std::str::from_utf8(&p[..end])
                    .map(|s| Some(s.to_owned()))
                    .map_err(|_| Error::BadAttr)
            }
        }
    }
}

/// Builds one netlink message: header, optional generic-netlink header,
/// then attributes (nests via [`MsgBuilder::nest_start`]/[`MsgBuilder::nest_end`]).
pub struct MsgBuilder {
    buf: Vec<u8>,
}

impl MsgBuilder {
    /// A message of type `ty` (the length is filled in by [`MsgBuilder::finish`]).
    pub fn new(ty: u16, flags: u16, seq: u32, pid: u32) -> MsgBuilder {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        NlHeader {
            len: 0,
            ty,
            flags,
            seq,
            pid,
        }
        .write(&mut buf);
        MsgBuilder { buf }
    }

    /// A generic-netlink message (`genlmsg_put`).
    pub fn genl(ty: u16, flags: u16, seq: u32, pid: u32, cmd: u8, version: u8) -> MsgBuilder {
        let mut b = MsgBuilder::new(ty, flags, seq, pid);
        b.buf.extend_from_slice(&[cmd, version, 0, 0]);
        b
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// `nla_put`: header, payload, padding to 4.
    pub fn put(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = (NLA_HDRLEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }
    pub fn put_u8(&mut self, ty: u16, v: u8) -> &mut Self {
        self.put(ty, &[v])
    }
    pub fn put_u16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.put(ty, &v.to_ne_bytes())
    }
    pub fn put_be16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }
    pub fn put_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_ne_bytes())
    }
    /// `nla_put_u64_64bit`: x86-64 and arm64 have efficient unaligned
    /// access, so the kernel adds no PAD attribute there, nor do we.
    pub fn put_u64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.put(ty, &v.to_ne_bytes())
    }
    /// `nla_put_string`: with its NUL.
    pub fn put_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut p = s.as_bytes().to_vec();
        p.push(0);
        self.put(ty, &p)
    }

    /// Opens a nested attribute; returns its offset for [`MsgBuilder::nest_end`].
    pub fn nest_start(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }
    pub fn nest_end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// The message with its length set.
    pub fn finish(mut self) -> Vec<u8> {
        self.pad();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// `NLMSG_ERROR` for `req` (`netlink_ack`): `error` 0 is an ACK and carries
/// only the request's header; an error carries the whole request, as the
/// kernel does for a socket without `NETLINK_CAP_ACK`.
pub fn ack(req: &[u8], error: i32, pid: u32) -> Vec<u8> {
    let h = NlHeader::parse(req).unwrap_or(NlHeader {
        len: NLMSG_HDRLEN as u32,
        ty: 0,
        flags: 0,
        seq: 0,
        pid: 0,
    });
    let echoed = if error == 0 {
        &req[..NLMSG_HDRLEN.min(req.len())]
    } else {
        &req[..(h.len as usize).min(req.len())]
    };
    let mut b = MsgBuilder::new(NLMSG_ERROR, 0, h.seq, pid);
    b.raw(&error.to_ne_bytes()).raw(echoed);
    b.finish()
}

/// `NLMSG_DONE` ending a dump (`netlink_dump_done`: an int, 0).
pub fn done(seq: u32, pid: u32) -> Vec<u8> {
    let mut b = MsgBuilder::new(NLMSG_DONE, NLM_F_MULTI, seq, pid);
    b.raw(&0i32.to_ne_bytes());
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_round_trip_with_nesting_and_padding() {
        let mut b = MsgBuilder::genl(0x20, NLM_F_REQUEST, 7, 99, 1, 1);
        let n = b.nest_start(1);
        b.put_u16(1, 2).put_str(6, "rr").put_be16(4, 80);
        b.nest_end(n);
        b.put_u32(4, 900);
        let m = b.finish();
        assert_eq!(m.len() % 4, 0);
        let g = GenlMsg::parse(&m).unwrap();
        assert_eq!((g.hdr.ty, g.hdr.seq, g.hdr.pid, g.cmd), (0x20, 7, 99, 1));
        let s = g.attrs.nested(1).unwrap().unwrap();
        assert_eq!(s.u16(1).unwrap(), Some(2));
        assert_eq!(s.string(6).unwrap().as_deref(), Some("rr"));
        assert_eq!(s.be16(4).unwrap(), Some(80));
        assert_eq!(g.attrs.u32(4).unwrap(), Some(900));
        // The nested attribute's type carries NLA_F_NESTED on the wire.
        assert_eq!(u16::from_ne_bytes([m[22], m[23]]), 1 | NLA_F_NESTED);
    }

    #[test]
    fn truncated_and_overlong_input_is_an_error_not_a_panic() {
        let m = MsgBuilder::genl(0x20, 0, 1, 0, 1, 1).finish();
        for cut in 0..m.len() {
            let _ = split_messages(&m[..cut]);
            let _ = GenlMsg::parse(&m[..cut]);
        }
        let mut bad = m.clone();
        bad[0] = 200; // nlmsg_len past the end
        assert_eq!(split_messages(&bad), Err(Error::BadLength(200)));
        // An attribute whose length runs past its container.
        assert_eq!(
            Attrs::parse(&[9, 0, 1, 0, 1, 2]).unwrap_err(),
            Error::BadAttr
        );
        // A u32 attribute with two bytes.
        let a = Attrs::parse(&[6, 0, 3, 0, 1, 2, 0, 0]).unwrap();
        assert_eq!(a.u32(3), Err(Error::BadAttr));
    }

    #[test]
    fn ack_and_done_match_the_kernels_layout() {
        let req = MsgBuilder::genl(0x20, NLM_F_REQUEST | NLM_F_ACK, 5, 42, 1, 1).finish();
        let a = ack(&req, 0, 42);
        // nlmsghdr (16) + int error (4) + the request's nlmsghdr (16).
        assert_eq!(a.len(), 36);
        let h = NlHeader::parse(&a).unwrap();
        assert_eq!((h.len, h.ty, h.seq, h.pid), (36, NLMSG_ERROR, 5, 42));
        assert_eq!(i32::from_ne_bytes(a[16..20].try_into().unwrap()), 0);
        assert_eq!(&a[20..36], &req[..16]);
        // An error echoes the whole request.
        let e = ack(&req, -17, 42);
        assert_eq!(e.len(), 16 + 4 + req.len());
        assert_eq!(i32::from_ne_bytes(e[16..20].try_into().unwrap()), -17);
        let d = done(5, 42);
        assert_eq!(d.len(), 20);
        let h = NlHeader::parse(&d).unwrap();
        assert_eq!((h.ty, h.flags), (NLMSG_DONE, NLM_F_MULTI));
    }
}

//! A minimal libpcap-format (not pcapng) reader and writer, enough to feed
//! and check DPDK's `net_pcap` vdev without pulling in a crate.

use std::io::{self, Read, Write};
use std::path::Path;

const MAGIC_USEC: u32 = 0xa1b2_c3d4;
const MAGIC_NSEC: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 65535;

/// Write `frames` as an Ethernet capture, microsecond timestamps 0, 1, 2, ...
pub fn write(path: &Path, frames: &[Vec<u8>]) -> io::Result<()> {
    let mut out = Vec::new();
    for v in [MAGIC_USEC, 0x0004_0002, 0, 0, SNAPLEN, LINKTYPE_ETHERNET] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    // The version word above packs major 2 / minor 4 as two u16s; thiszone
    // and sigfigs follow as zeros.
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.len()).map_err(|_| io::Error::other("frame too long"))?;
        for v in [0u32, i as u32, len, len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    std::fs::File::create(path)?.write_all(&out)
}

/// Read every frame of a capture (either byte order, usec or nsec stamps).
pub fn read(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    if buf.len() < 24 {
        return Err(bad("shorter than a pcap header"));
    }
    let magic = u32::from_le_bytes(buf[0..4].try_into().unwrap());
    let le = match magic {
        MAGIC_USEC | MAGIC_NSEC => true,
        m if m.swap_bytes() == MAGIC_USEC || m.swap_bytes() == MAGIC_NSEC => false,
        _ => return Err(bad("not a libpcap file")),
    };
    let u32_at = |b: &[u8], at: usize| {
        let w: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    if u32_at(&buf, 20) != LINKTYPE_ETHERNET {
        return Err(bad("link type is not Ethernet"));
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at < buf.len() {
        if buf.len() - at < 16 {
            return Err(bad("truncated record header"));
        }
        let incl = u32_at(&buf, at + 8) as usize;
        let start = at + 16;
        if buf.len() - start < incl {
            return Err(bad("truncated record"));
        }
        frames.push(buf[start..start + incl].to_vec());
        at = start + incl;
    }
    Ok(frames)
}

//! ipvsadm's option checks: `generic_opt_check` (which options each
//! command allows) and the tunnel options' check.

use super::*;

pub(super) fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let d: String = t.chars().take_while(char::is_ascii_digit).collect();
    let v = d.parse::<i64>().unwrap_or(0);
    if neg {
        -v
    } else {
        v
    }
}

/// ipvsadm.c `generic_opt_check` over [`CMD_TABLE`].
pub(super) fn generic_opt_check(cmd: Cmd, options: u64) -> Result<(), Exit> {
    let (cname, row) = CMD_TABLE[cmd as usize];
    let mut last: Option<usize> = None;
    for (j, k) in row.bytes().enumerate() {
        if options & (1 << j) == 0 {
            if k == b'+' {
                return fail(
                    2,
                    format!(
                        "You need to supply the '{}' option for the '{cname}' command",
                        OPTNAMES[j]
                    ),
                );
            }
        } else {
            if k == b'x' {
                return fail(
                    2,
                    format!(
                        "Illegal '{}' option with the '{cname}' command",
                        OPTNAMES[j]
                    ),
                );
            }
            if k == b'1' {
                if let Some(l) = last {
                    return fail(
                        2,
                        format!(
                            "The option '{}' conflicts with the '{}' option in the '{cname}' command",
                            OPTNAMES[j], OPTNAMES[l]
                        ),
                    );
                }
                last = Some(j);
            }
        }
    }
    Ok(())
}

/// ipvsadm.c `tunnel_opt_check` over [`TUN_TABLE`].
pub(super) fn tunnel_opt_check(tun_type: &str, options: u64) -> Result<(), Exit> {
    let Some(&(tname, row)) = TUN_TABLE.iter().find(|t| t.0 == tun_type) else {
        return Ok(());
    };
    let mut last: Option<usize> = None;
    for (j, k) in row.bytes().enumerate() {
        let c = TUN_OPTS[j];
        if options & (1 << c) == 0 {
            if k == b'+' {
                return fail(
                    2,
                    format!(
                        "You need to supply the '{}' option for the '{tname}' tunnel type",
                        OPTNAMES[c]
                    ),
                );
            }
        } else {
            if k == b'x' {
                return fail(
                    2,
                    format!(
                        "Illegal '{}' option with the '{tname}' tunnel type",
                        OPTNAMES[c]
                    ),
                );
            }
            if k == b'1' {
                if let Some(l) = last {
                    return fail(
                        2,
                        format!(
                            "The option '{}' conflicts with the '{}' option in the '{tname}' tunnel type",
                            OPTNAMES[c], OPTNAMES[l]
                        ),
                    );
                }
                last = Some(c);
            }
        }
    }
    Ok(())
}

//! Translation of the backend's nftables JSON batches (see `render`) into nf_tables netlink
//! requests, expression by expression as `nft` 1.0 compiles them (so `nft list ruleset`
//! shows the same rules, and rules written by either backend read back alike).
//!
//! Only what `render` produces is understood: matches on `meta` (`iifname`, `oifname`,
//! `nfproto`, `l4proto`, `mark`), `payload` (`ip`/`ip6` addresses and prefixes, `tcp`/`udp`
//! ports), `ct` (`state`, `status` flags), `fib daddr type` and `meta mark & M`; `counter`,
//! `masquerade`, `dnat`, `meta mark set meta mark | M`, and verdicts. Anything else is an
//! error naming it (a bug: the batch came from this crate).

use std::net::IpAddr;

use serde_json::Value;

use super::conn::{Batch, NlError};
use super::wire::Writer;

// NFT_MSG_*.
pub(super) const NEWTABLE: u16 = 0;
pub(super) const DELTABLE: u16 = 2;
pub(super) const NEWCHAIN: u16 = 3;
pub(super) const GETCHAIN: u16 = 4;
pub(super) const DELCHAIN: u16 = 5;
pub(super) const NEWRULE: u16 = 6;
pub(super) const GETRULE: u16 = 7;
pub(super) const DELRULE: u16 = 8;
const NEWSET: u16 = 9;
const DELSET: u16 = 11;
const NEWSETELEM: u16 = 12;
const DELSETELEM: u16 = 14;

const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;

// Attributes (linux/netfilter/nf_tables.h).
pub(super) const TABLE_NAME: u16 = 1;
pub(super) const CHAIN_TABLE: u16 = 1;
pub(super) const CHAIN_NAME: u16 = 3;
pub(super) const CHAIN_HOOK: u16 = 4;
pub(super) const CHAIN_POLICY: u16 = 5;
pub(super) const CHAIN_TYPE: u16 = 7;
pub(super) const HOOK_HOOKNUM: u16 = 1;
pub(super) const HOOK_PRIORITY: u16 = 2;
pub(super) const RULE_TABLE: u16 = 1;
pub(super) const RULE_CHAIN: u16 = 2;
pub(super) const RULE_HANDLE: u16 = 3;
pub(super) const RULE_EXPRESSIONS: u16 = 4;
const RULE_POSITION: u16 = 6;
pub(super) const RULE_USERDATA: u16 = 7;
pub(super) const LIST_ELEM: u16 = 1;
pub(super) const EXPR_NAME: u16 = 1;
pub(super) const EXPR_DATA: u16 = 2;
pub(super) const IMMEDIATE_DREG: u16 = 1;
pub(super) const IMMEDIATE_DATA: u16 = 2;
pub(super) const DATA_VALUE: u16 = 1;
pub(super) const DATA_VERDICT: u16 = 2;
pub(super) const VERDICT_CODE: u16 = 1;
pub(super) const VERDICT_CHAIN: u16 = 2;
pub(super) const NAT_TYPE: u16 = 1;
const SET_TABLE: u16 = 1;
const SET_NAME: u16 = 2;
const SET_FLAGS: u16 = 3;
const SET_KEY_TYPE: u16 = 4;
const SET_KEY_LEN: u16 = 5;
const SET_ID: u16 = 10;
const SET_ELEM_LIST_TABLE: u16 = 1;
const SET_ELEM_LIST_SET: u16 = 2;
const SET_ELEM_LIST_ELEMENTS: u16 = 3;
const SET_ELEM_KEY: u16 = 1;
const SET_ELEM_TIMEOUT: u16 = 4;
/// `NFT_SET_CONSTANT`, `NFT_SET_INTERVAL`, `NFT_SET_TIMEOUT`.
const SET_FLAG_CONSTANT: u32 = 0x2;
const SET_FLAG_INTERVAL: u32 = 0x4;
const SET_FLAG_TIMEOUT: u32 = 0x10;

/// `NFTNL_UDATA_RULE_COMMENT`: the type of a rule comment in its userdata.
pub(super) const UDATA_COMMENT: u8 = 0;

// Registers, verdicts, keys.
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const CMP_LTE: u32 = 3;
const CMP_GTE: u32 = 5;
/// `NFT_LOOKUP_F_INV`.
const LOOKUP_INV: u32 = 1;
/// `NFT_REJECT_TCP_RST`, `NFT_REJECT_ICMPX_UNREACH`, `NFT_REJECT_ICMPX_PORT_UNREACH`.
const REJECT_TCP_RST: u32 = 1;
const REJECT_ICMPX: u32 = 2;
const ICMPX_PORT_UNREACH: u8 = 1;
const PAYLOAD_LL: u32 = 0;
pub(super) const NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;
const IFNAMSIZ: usize = 16;

/// `NFPROTO_*` of a family name.
pub(super) fn family_code(name: &str) -> Option<u8> {
    Some(match name {
        "inet" => 1,
        "ip" => 2,
        "arp" => 3,
        "netdev" => 5,
        "bridge" => 7,
        "ip6" => 10,
        _ => return None,
    })
}

fn bad(what: &str, v: &Value) -> NlError {
    NlError::invalid("encode", format!("unsupported {what}: {v}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Result<&'a str, NlError> {
    v.get(key).and_then(Value::as_str).ok_or_else(|| bad(key, v))
}

/// Translates a whole JSON batch (`{"nftables": [...]}`).
pub(crate) fn batch(json: &Value) -> Result<Batch, NlError> {
    let mut b = Batch::default();
    let cmds = json.get("nftables").and_then(Value::as_array).ok_or_else(|| bad("batch", json))?;
    for cmd in cmds {
        command(&mut b, cmd)?;
    }
    Ok(b)
}

fn command(b: &mut Batch, cmd: &Value) -> Result<(), NlError> {
    let (verb, obj) = cmd.as_object().and_then(|o| o.iter().next()).ok_or_else(|| bad("command", cmd))?;
    let (kind, o) = obj.as_object().and_then(|o| o.iter().next()).ok_or_else(|| bad("command", cmd))?;
    let family_name = str_of(o, "family")?;
    let family = family_code(family_name).ok_or_else(|| bad("family", o))?;
    match (verb.as_str(), kind.as_str()) {
        ("add", "table") => {
            b.begin(NEWTABLE, NLM_F_CREATE, family, format!("add table {family_name} {}", str_of(o, "name")?));
            b.w.put_str(TABLE_NAME, str_of(o, "name")?);
        }
        ("delete", "table") => {
            b.begin(DELTABLE, 0, family, format!("delete table {family_name} {}", str_of(o, "name")?));
            b.w.put_str(TABLE_NAME, str_of(o, "name")?);
        }
        ("add" | "create", "chain") => {
            let flags = if verb == "create" { NLM_F_CREATE | NLM_F_EXCL } else { NLM_F_CREATE };
            let (table, name) = (str_of(o, "table")?, str_of(o, "name")?);
            b.begin(NEWCHAIN, flags, family, format!("{verb} chain {family_name} {table} {name}"));
            b.w.put_str(CHAIN_TABLE, table);
            b.w.put_str(CHAIN_NAME, name);
            if let Some(hook) = o.get("hook") {
                let num = match hook.as_str() {
                    Some("prerouting") => 0,
                    Some("input") => 1,
                    Some("forward") => 2,
                    Some("output") => 3,
                    Some("postrouting") => 4,
                    _ => return Err(bad("hook", o)),
                };
                let prio = o.get("prio").and_then(Value::as_i64).ok_or_else(|| bad("prio", o))?;
                b.w.open(CHAIN_HOOK);
                b.w.put_u32(HOOK_HOOKNUM, num);
                b.w.put_u32(HOOK_PRIORITY, i32::try_from(prio).map_err(|_| bad("prio", o))? as u32);
                b.w.close();
                let policy = match o.get("policy").and_then(Value::as_str) {
                    Some("drop") => NF_DROP,
                    _ => NF_ACCEPT,
                };
                b.w.put_u32(CHAIN_POLICY, policy as u32);
                b.w.put_str(CHAIN_TYPE, str_of(o, "type")?);
            }
        }
        ("delete", "chain") => {
            let (table, name) = (str_of(o, "table")?, str_of(o, "name")?);
            b.begin(DELCHAIN, 0, family, format!("delete chain {family_name} {table} {name}"));
            b.w.put_str(CHAIN_TABLE, table);
            b.w.put_str(CHAIN_NAME, name);
        }
        ("add" | "insert", "rule") => {
            let (table, chain) = (str_of(o, "table")?, str_of(o, "chain")?);
            let position = o.get("handle").and_then(Value::as_u64);
            // `add` appends (after `handle` if given); `insert` goes before `handle` (or first).
            let flags = if verb == "add" { NLM_F_CREATE | NLM_F_APPEND } else { NLM_F_CREATE };
            b.begin(NEWRULE, flags, family, format!("{verb} rule {family_name} {table} {chain}"));
            b.w.put_str(RULE_TABLE, table);
            b.w.put_str(RULE_CHAIN, chain);
            if let Some(p) = position {
                b.w.put_u64(RULE_POSITION, p);
            }
            let exprs = o.get("expr").and_then(Value::as_array).ok_or_else(|| bad("rule", o))?;
            b.w.open(RULE_EXPRESSIONS);
            let mut rule = RuleEnc { w: &mut b.w, inet: family_name == "inet", nfproto: None, l4proto: None };
            for e in exprs {
                rule.statement(e)?;
            }
            b.w.close();
            if let Some(comment) = o.get("comment").and_then(Value::as_str) {
                b.w.put(RULE_USERDATA, &comment_udata(comment)?);
            }
        }
        ("add" | "create", "set") => {
            let flags = if verb == "create" { NLM_F_CREATE | NLM_F_EXCL } else { NLM_F_CREATE };
            let (table, name) = (str_of(o, "table")?, str_of(o, "name")?);
            let (key_type, key_len) = match str_of(o, "type")? {
                "ipv4_addr" => (7, 4),  // TYPE_IPADDR
                "ipv6_addr" => (8, 16), // TYPE_IP6ADDR
                _ => return Err(bad("set type", o)),
            };
            let mut set_flags = 0;
            for f in o.get("flags").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
                set_flags |= match f.as_str() {
                    Some("timeout") => SET_FLAG_TIMEOUT,
                    Some("interval") => SET_FLAG_INTERVAL,
                    Some("constant") => SET_FLAG_CONSTANT,
                    _ => return Err(bad("set flag", f)),
                };
            }
            let id = u32::try_from(b.what.len() + 1).unwrap_or(u32::MAX);
            b.begin(NEWSET, flags, family, format!("{verb} set {family_name} {table} {name}"));
            b.w.put_str(SET_TABLE, table);
            b.w.put_str(SET_NAME, name);
            b.w.put_u32(SET_FLAGS, set_flags);
            b.w.put_u32(SET_KEY_TYPE, key_type);
            b.w.put_u32(SET_KEY_LEN, key_len);
            b.w.put_u32(SET_ID, id);
        }
        ("delete", "set") => {
            let (table, name) = (str_of(o, "table")?, str_of(o, "name")?);
            b.begin(DELSET, 0, family, format!("delete set {family_name} {table} {name}"));
            b.w.put_str(SET_TABLE, table);
            b.w.put_str(SET_NAME, name);
        }
        ("add" | "create" | "delete", "element") => {
            let (table, name) = (str_of(o, "table")?, str_of(o, "name")?);
            let (msg, flags) = match verb.as_str() {
                "add" => (NEWSETELEM, NLM_F_CREATE),
                "create" => (NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL),
                _ => (DELSETELEM, 0),
            };
            b.begin(msg, flags, family, format!("{verb} element {family_name} {table} {name}"));
            b.w.put_str(SET_ELEM_LIST_TABLE, table);
            b.w.put_str(SET_ELEM_LIST_SET, name);
            b.w.open(SET_ELEM_LIST_ELEMENTS);
            for e in o.get("elem").and_then(Value::as_array).ok_or_else(|| bad("elements", o))? {
                let (value, timeout) = match e.get("elem") {
                    Some(inner) => (inner.get("val").unwrap_or(&Value::Null), inner.get("timeout")),
                    None => (e, None),
                };
                b.w.open(LIST_ELEM);
                b.w.open(SET_ELEM_KEY);
                b.w.put(DATA_VALUE, &addr_bytes(value)?);
                b.w.close();
                if let Some(t) = timeout {
                    let secs = t.as_u64().ok_or_else(|| bad("timeout", t))?;
                    b.w.put_u64(SET_ELEM_TIMEOUT, secs.saturating_mul(1000));
                }
                b.w.close();
            }
            b.w.close();
        }
        ("flush", "chain") => {
            let (table, name) = (str_of(o, "table")?, str_of(o, "name")?);
            b.begin(DELRULE, 0, family, format!("flush chain {family_name} {table} {name}"));
            b.w.put_str(RULE_TABLE, table);
            b.w.put_str(RULE_CHAIN, name);
        }
        ("delete", "rule") => {
            let (table, chain) = (str_of(o, "table")?, str_of(o, "chain")?);
            let handle = o.get("handle").and_then(Value::as_u64).ok_or_else(|| bad("handle", o))?;
            b.begin(DELRULE, 0, family, format!("delete rule {family_name} {table} {chain} handle {handle}"));
            b.w.put_str(RULE_TABLE, table);
            b.w.put_str(RULE_CHAIN, chain);
            b.w.put_u64(RULE_HANDLE, handle);
        }
        _ => return Err(bad("command", cmd)),
    }
    b.w.end();
    Ok(())
}

/// A rule comment as `nft` stores it in the rule's userdata: a TLV with the NUL-terminated
/// text.
fn comment_udata(comment: &str) -> Result<Vec<u8>, NlError> {
    let len = u8::try_from(comment.len() + 1).map_err(|_| bad("comment", &Value::from(comment)))?;
    let mut v = vec![UDATA_COMMENT, len];
    v.extend_from_slice(comment.as_bytes());
    v.push(0);
    Ok(v)
}

/// What a match loads into register 1.
enum Load {
    Meta(u32),
    Payload { base: u32, offset: u32, len: u32 },
    Ct(u32),
    Fib,
    MarkAnd(u32),
}

/// The expressions of one rule, with the protocol dependencies `nft` adds (`meta nfproto`
/// before an `ip`/`ip6` field in an `inet` table, `meta l4proto` before a port).
struct RuleEnc<'a> {
    w: &'a mut Writer,
    inet: bool,
    nfproto: Option<u8>,
    l4proto: Option<u8>,
}

const META_PROTOCOL: u32 = 1;
const META_MARK: u32 = 3;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;
const CT_STATE: u32 = 0;
const CT_STATUS: u32 = 2;

impl RuleEnc<'_> {
    fn expr(&mut self, name: &str, body: impl FnOnce(&mut Writer)) {
        self.w.open(LIST_ELEM);
        self.w.put_str(EXPR_NAME, name);
        self.w.open(EXPR_DATA);
        body(self.w);
        self.w.close();
        self.w.close();
    }

    fn meta_load(&mut self, key: u32) {
        self.expr("meta", |w| {
            w.put_u32(2, key); // NFTA_META_KEY
            w.put_u32(1, REG_1); // NFTA_META_DREG
        });
    }

    fn cmp(&mut self, op: u32, data: &[u8]) {
        self.expr("cmp", |w| {
            w.put_u32(1, REG_1); // NFTA_CMP_SREG
            w.put_u32(2, op); // NFTA_CMP_OP
            w.open(3); // NFTA_CMP_DATA
            w.put(DATA_VALUE, data);
            w.close();
        });
    }

    fn bitwise(&mut self, mask: &[u8], xor: &[u8]) {
        self.expr("bitwise", |w| {
            w.put_u32(1, REG_1); // NFTA_BITWISE_SREG
            w.put_u32(2, REG_1); // NFTA_BITWISE_DREG
            w.put_u32(3, mask.len() as u32); // NFTA_BITWISE_LEN
            w.open(4); // NFTA_BITWISE_MASK
            w.put(DATA_VALUE, mask);
            w.close();
            w.open(5); // NFTA_BITWISE_XOR
            w.put(DATA_VALUE, xor);
            w.close();
        });
    }

    fn immediate(&mut self, reg: u32, data: &[u8]) {
        self.expr("immediate", |w| {
            w.put_u32(IMMEDIATE_DREG, reg);
            w.open(IMMEDIATE_DATA);
            w.put(DATA_VALUE, data);
            w.close();
        });
    }

    fn verdict(&mut self, code: i32, chain: Option<&str>) {
        self.expr("immediate", |w| {
            w.put_u32(IMMEDIATE_DREG, REG_VERDICT);
            w.open(IMMEDIATE_DATA);
            w.open(DATA_VERDICT);
            w.put_u32(VERDICT_CODE, code as u32);
            if let Some(c) = chain {
                w.put_str(VERDICT_CHAIN, c);
            }
            w.close();
            w.close();
        });
    }

    fn payload_load(&mut self, base: u32, offset: u32, len: u32) {
        self.expr("payload", |w| {
            w.put_u32(1, REG_1); // NFTA_PAYLOAD_DREG
            w.put_u32(2, base); // NFTA_PAYLOAD_BASE
            w.put_u32(3, offset); // NFTA_PAYLOAD_OFFSET
            w.put_u32(4, len); // NFTA_PAYLOAD_LEN
        });
    }

    fn need_nfproto(&mut self, proto: u8) {
        if self.inet && self.nfproto != Some(proto) {
            self.meta_load(META_NFPROTO);
            self.cmp(CMP_EQ, &[proto]);
            self.nfproto = Some(proto);
        }
    }

    fn need_l4proto(&mut self, proto: u8) {
        if self.l4proto != Some(proto) {
            self.meta_load(META_L4PROTO);
            self.cmp(CMP_EQ, &[proto]);
            self.l4proto = Some(proto);
        }
    }

    fn load(&mut self, left: &Value) -> Result<Load, NlError> {
        if let Some(m) = left.get("meta") {
            let key = match str_of(m, "key")? {
                "iifname" => META_IIFNAME,
                "oifname" => META_OIFNAME,
                "nfproto" => META_NFPROTO,
                "l4proto" => META_L4PROTO,
                "mark" => META_MARK,
                "protocol" => META_PROTOCOL,
                _ => return Err(bad("meta key", m)),
            };
            return Ok(Load::Meta(key));
        }
        if let Some(p) = left.get("payload") {
            let (proto, field) = (str_of(p, "protocol")?, str_of(p, "field")?);
            let (base, offset, len) = match (proto, field) {
                ("ip", "saddr") => (PAYLOAD_NETWORK, 12, 4),
                ("ip", "daddr") => (PAYLOAD_NETWORK, 16, 4),
                ("ip6", "saddr") => (PAYLOAD_NETWORK, 8, 16),
                ("ip6", "daddr") => (PAYLOAD_NETWORK, 24, 16),
                ("tcp" | "udp", "sport") => (PAYLOAD_TRANSPORT, 0, 2),
                ("tcp" | "udp", "dport") => (PAYLOAD_TRANSPORT, 2, 2),
                ("ether", "saddr") => (PAYLOAD_LL, 6, 6),
                ("ether", "daddr") => (PAYLOAD_LL, 0, 6),
                ("arp", "saddr ip") => (PAYLOAD_NETWORK, 14, 4),
                ("arp", "daddr ip") => (PAYLOAD_NETWORK, 24, 4),
                ("icmpv6", "type") => (PAYLOAD_TRANSPORT, 0, 1),
                _ => return Err(bad("payload", p)),
            };
            match proto {
                "ip" => self.need_nfproto(2),
                "ip6" => self.need_nfproto(10),
                "tcp" => self.need_l4proto(6),
                "udp" => self.need_l4proto(17),
                "icmpv6" => self.need_l4proto(58),
                _ => {}
            }
            return Ok(Load::Payload { base, offset, len });
        }
        if let Some(c) = left.get("ct") {
            return match str_of(c, "key")? {
                "state" => Ok(Load::Ct(CT_STATE)),
                "status" => Ok(Load::Ct(CT_STATUS)),
                _ => Err(bad("ct key", c)),
            };
        }
        if let Some(f) = left.get("fib") {
            let daddr = f.get("flags").and_then(Value::as_array).is_some_and(|a| a.len() == 1 && a[0] == "daddr");
            if f.get("result").and_then(Value::as_str) != Some("type") || !daddr {
                return Err(bad("fib", f));
            }
            return Ok(Load::Fib);
        }
        if let Some(and) = left.get("&").and_then(Value::as_array)
            && let [m, n] = and.as_slice()
            && m.get("meta").and_then(|m| m.get("key")) == Some(&Value::from("mark"))
        {
            let mask = n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad("mask", n))?;
            return Ok(Load::MarkAnd(mask));
        }
        Err(bad("match", left))
    }

    fn matches(&mut self, m: &Value) -> Result<(), NlError> {
        let left = m.get("left").ok_or_else(|| bad("match", m))?;
        let right = m.get("right").ok_or_else(|| bad("match", m))?;
        let op = match str_of(m, "op")? {
            "==" => CMP_EQ,
            "!=" => CMP_NEQ,
            "in" => u32::MAX,
            _ => return Err(bad("operator", m)),
        };
        let load = self.load(left)?;
        if op == u32::MAX && !matches!(load, Load::Ct(_)) {
            return Err(bad("operator", m));
        }
        match load {
            Load::Meta(key @ (META_IIFNAME | META_OIFNAME)) => {
                let name = right.as_str().ok_or_else(|| bad("interface", right))?;
                if name.len() >= IFNAMSIZ || name.contains('*') {
                    return Err(bad("interface", right));
                }
                let mut data = [0u8; IFNAMSIZ];
                data[..name.len()].copy_from_slice(name.as_bytes());
                self.meta_load(key);
                self.cmp(op, &data);
            }
            Load::Meta(key @ (META_NFPROTO | META_L4PROTO)) => {
                let v = match right.as_str() {
                    Some("ipv4") => 2,
                    Some("ipv6") => 10,
                    Some("tcp") => 6,
                    Some("udp") => 17,
                    Some("icmp") => 1,
                    Some("icmpv6") => 58,
                    _ => return Err(bad("protocol", right)),
                };
                self.meta_load(key);
                self.cmp(op, &[v]);
                if key == META_NFPROTO && op == CMP_EQ {
                    self.nfproto = Some(v);
                } else if op == CMP_EQ {
                    self.l4proto = Some(v);
                }
            }
            Load::Meta(META_PROTOCOL) => {
                let ether_type: u16 = match right.as_str() {
                    Some("ip") => 0x0800,
                    Some("arp") => 0x0806,
                    Some("ip6") => 0x86dd,
                    _ => return Err(bad("ether type", right)),
                };
                self.meta_load(META_PROTOCOL);
                self.cmp(op, &ether_type.to_be_bytes());
            }
            Load::Meta(key) => {
                let v = u32_of(right)?;
                self.meta_load(key);
                self.cmp(op, &v.to_ne_bytes());
            }
            Load::MarkAnd(mask) => {
                self.meta_load(META_MARK);
                self.bitwise(&mask.to_ne_bytes(), &0u32.to_ne_bytes());
                self.cmp(op, &u32_of(right)?.to_ne_bytes());
            }
            Load::Payload { base, offset, len } => {
                if let Some(set) = right.as_str().and_then(|r| r.strip_prefix('@')) {
                    self.payload_load(base, offset, len);
                    self.expr("lookup", |w| {
                        w.put_str(1, set); // NFTA_LOOKUP_SET
                        w.put_u32(2, REG_1); // NFTA_LOOKUP_SREG
                        if op == CMP_NEQ {
                            w.put_u32(5, LOOKUP_INV); // NFTA_LOOKUP_FLAGS
                        }
                    });
                    return Ok(());
                }
                if let Some(range) = right.get("range").and_then(Value::as_array) {
                    let [first, last] = range.as_slice() else { return Err(bad("range", right)) };
                    let (first, last) = (value_bytes(first, len)?, value_bytes(last, len)?);
                    if op != CMP_EQ {
                        return Err(bad("range operator", m));
                    }
                    self.payload_load(base, offset, len);
                    self.cmp(CMP_GTE, &first);
                    self.cmp(CMP_LTE, &last);
                    return Ok(());
                }
                let (data, bits) = if let Some(p) = right.get("prefix") {
                    let addr = addr_bytes(p.get("addr").unwrap_or(&Value::Null))?;
                    let bits = p.get("len").and_then(Value::as_u64).ok_or_else(|| bad("prefix", p))?;
                    (addr, usize::try_from(bits).unwrap_or(usize::MAX))
                } else {
                    let data = value_bytes(right, len)?;
                    let bits = data.len() * 8;
                    (data, bits)
                };
                if data.len() != len as usize || bits > data.len() * 8 {
                    return Err(bad("payload value", right));
                }
                if bits == 0 {
                    // `ip saddr 0.0.0.0/0`: only the dependency is left.
                    return Ok(());
                }
                // A byte-aligned prefix loads only the bytes it covers; another one loads the
                // whole field and masks it (as `nft` does).
                let aligned = bits % 8 == 0;
                let bytes = if aligned { bits / 8 } else { data.len() };
                let mut value = data[..bytes].to_vec();
                self.payload_load(base, offset, bytes as u32);
                if !aligned {
                    let mask: Vec<u8> = (0..bytes)
                        .map(|i| match bits.saturating_sub(i * 8) {
                            0 => 0,
                            b if b >= 8 => 0xff,
                            b => 0xffu8 << (8 - b),
                        })
                        .collect();
                    for (v, m) in value.iter_mut().zip(&mask) {
                        *v &= m;
                    }
                    self.bitwise(&mask, &vec![0; bytes]);
                }
                self.cmp(op, &value);
            }
            Load::Ct(key) => {
                let names: Vec<&str> = match right {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => return Err(bad("ct value", right)),
                };
                let mut bits = 0u32;
                for n in names {
                    bits |= match (key, n) {
                        (CT_STATE, "invalid") => 1,
                        (CT_STATE, "established") => 2,
                        (CT_STATE, "related") => 4,
                        (CT_STATE, "new") => 8,
                        (CT_STATE, "untracked") => 64,
                        (CT_STATUS, "snat") => 0x10,
                        (CT_STATUS, "dnat") => 0x20,
                        _ => return Err(bad("ct value", right)),
                    };
                }
                self.expr("ct", |w| {
                    w.put_u32(2, key); // NFTA_CT_KEY
                    w.put_u32(1, REG_1); // NFTA_CT_DREG
                });
                if op != u32::MAX {
                    return Err(bad("ct operator", m));
                }
                self.bitwise(&bits.to_ne_bytes(), &0u32.to_ne_bytes());
                self.cmp(CMP_NEQ, &0u32.to_ne_bytes());
            }
            Load::Fib => {
                let rtn: u32 = match right.as_str() {
                    Some("unicast") => 1,
                    Some("local") => 2,
                    Some("broadcast") => 3,
                    Some("multicast") => 5,
                    _ => return Err(bad("fib type", right)),
                };
                self.expr("fib", |w| {
                    w.put_u32(1, REG_1); // NFTA_FIB_DREG
                    w.put_u32(2, 3); // NFTA_FIB_RESULT: NFT_FIB_RESULT_ADDRTYPE
                    w.put_u32(3, 2); // NFTA_FIB_FLAGS: NFTA_FIB_F_DADDR
                });
                self.cmp(op, &rtn.to_ne_bytes());
            }
        }
        Ok(())
    }

    fn statement(&mut self, e: &Value) -> Result<(), NlError> {
        let (name, body) = e.as_object().and_then(|o| o.iter().next()).ok_or_else(|| bad("statement", e))?;
        match name.as_str() {
            "match" => self.matches(body)?,
            "counter" => self.expr("counter", |w| {
                w.put_u64(1, 0); // NFTA_COUNTER_BYTES
                w.put_u64(2, 0); // NFTA_COUNTER_PACKETS
            }),
            "masquerade" if body.is_null() => self.expr("masq", |_| {}),
            "dnat" => {
                let addr = addr_bytes(body.get("addr").unwrap_or(&Value::Null))?;
                let family: u32 = if addr.len() == 16 { 10 } else { 2 };
                self.immediate(REG_1, &addr);
                let port = body.get("port").and_then(Value::as_u64);
                if let Some(p) = port {
                    let p = u16::try_from(p).map_err(|_| bad("port", body))?;
                    self.immediate(REG_2, &p.to_be_bytes());
                }
                self.expr("nat", |w| {
                    w.put_u32(NAT_TYPE, NAT_DNAT);
                    w.put_u32(2, family); // NFTA_NAT_FAMILY
                    w.put_u32(3, REG_1); // NFTA_NAT_REG_ADDR_MIN
                    if port.is_some() {
                        w.put_u32(5, REG_2); // NFTA_NAT_REG_PROTO_MIN
                        w.put_u32(7, NF_NAT_RANGE_PROTO_SPECIFIED); // NFTA_NAT_FLAGS
                    }
                });
            }
            "mangle" => {
                let key_is_mark = body.pointer("/key/meta/key") == Some(&Value::from("mark"));
                let or = body.pointer("/value/|").and_then(Value::as_array);
                let bits = match or.map(Vec::as_slice) {
                    Some([m, n]) if m.pointer("/meta/key") == Some(&Value::from("mark")) => u32_of(n)?,
                    _ => return Err(bad("mangle", body)),
                };
                if !key_is_mark {
                    return Err(bad("mangle", body));
                }
                self.meta_load(META_MARK);
                self.bitwise(&(!bits).to_ne_bytes(), &bits.to_ne_bytes());
                self.expr("meta", |w| {
                    w.put_u32(2, META_MARK); // NFTA_META_KEY
                    w.put_u32(3, REG_1); // NFTA_META_SREG
                });
            }
            "reject" => {
                let (kind, code) = match (body.get("type").and_then(Value::as_str), body.get("expr")) {
                    (Some("tcp reset"), None) => (REJECT_TCP_RST, None),
                    (Some("icmpx"), Some(e)) if e == "port-unreachable" => (REJECT_ICMPX, Some(ICMPX_PORT_UNREACH)),
                    _ => return Err(bad("reject", body)),
                };
                self.expr("reject", |w| {
                    w.put_u32(1, kind); // NFTA_REJECT_TYPE
                    if let Some(c) = code {
                        w.put(2, &[c]); // NFTA_REJECT_ICMP_CODE
                    }
                });
            }
            "accept" => self.verdict(NF_ACCEPT, None),
            "drop" => self.verdict(NF_DROP, None),
            "return" => self.verdict(NFT_RETURN, None),
            "jump" | "goto" => {
                let target = str_of(body, "target")?;
                self.verdict(if name == "jump" { NFT_JUMP } else { NFT_GOTO }, Some(target));
            }
            _ => return Err(bad("statement", e)),
        }
        Ok(())
    }
}

fn u32_of(v: &Value) -> Result<u32, NlError> {
    v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad("number", v))
}

/// The bytes of a payload field of `len` bytes holding `v`: an address, a port or another
/// number, a MAC address, an ICMPv6 type by name.
fn value_bytes(v: &Value, len: u32) -> Result<Vec<u8>, NlError> {
    let number = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if len == 1 => match s.as_str() {
            "nd-router-solicit" => Some(133),
            "nd-router-advert" => Some(134),
            "nd-neighbor-solicit" => Some(135),
            "nd-neighbor-advert" => Some(136),
            _ => return Err(bad("icmpv6 type", v)),
        },
        _ => None,
    };
    match (number, len) {
        (Some(n), 1) => Ok(vec![u8::try_from(n).map_err(|_| bad("number", v))?]),
        (Some(n), 2) => Ok(u16::try_from(n).map_err(|_| bad("port", v))?.to_be_bytes().to_vec()),
        (Some(_), _) => Err(bad("number", v)),
        (None, 6) => {
            let text = v.as_str().ok_or_else(|| bad("mac", v))?;
            let bytes: Vec<u8> = text.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
            if bytes.len() == 6 && text.len() == 17 { Ok(bytes) } else { Err(bad("mac", v)) }
        }
        (None, _) => addr_bytes(v),
    }
}

fn addr_bytes(v: &Value) -> Result<Vec<u8>, NlError> {
    let ip: IpAddr = v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| bad("address", v))?;
    Ok(match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::wire::walk::{exprs_of, messages};
    use super::*;
    use crate::firewall::render;
    use crate::firewall::state::{NetMeta, TableState};
    use crate::firewall::test_rules;
    use crate::firewall::{PortMapping, PortRule};

    fn encode(batch: &nftables::schema::Nftables<'static>) -> Batch {
        batch_of(&serde_json::to_value(batch).unwrap()).unwrap()
    }

    fn batch_of(v: &Value) -> Result<Batch, NlError> {
        batch(v)
    }

    #[test]
    fn every_batch_the_backend_renders_encodes() {
        for internal in [false, true] {
            let r = test_rules(internal);
            let b = encode(&render::setup_network("nook", &TableState::default(), &r, &NetMeta::of(&r)));
            assert_eq!(b.what[0], "add table inet nook");
            assert!(b.what.iter().any(|w| w == "create chain inet nook nk-web-fwd"), "{:?}", b.what);
        }
        let b = encode(&render::delete_rules("nook", &[("nk-web-pre", 7)]));
        assert_eq!(b.what, ["delete rule inet nook nk-web-pre handle 7"]);
    }

    #[test]
    fn a_port_rule_is_what_nft_compiles() {
        let mut mapping = PortMapping::tcp(8080, 80);
        mapping.host_ip = Some("10.0.0.1".parse().unwrap());
        let b =
            encode(&render::add_ports("nook", "web", "ep1", &[PortRule::new(mapping, "10.88.0.2".parse().unwrap())]));
        let msgs = messages(&b.w.buf);
        assert_eq!(msgs.len(), 1);
        // `nft --debug=netlink`: nfproto, daddr, l4proto, dport, counter, two immediates, nat.
        let names: Vec<String> = exprs_of(&msgs[0]).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "meta",
                "cmp",
                "payload",
                "cmp",
                "meta",
                "cmp",
                "payload",
                "cmp",
                "counter",
                "immediate",
                "immediate",
                "nat"
            ]
        );
        let exprs = exprs_of(&msgs[0]);
        // cmp of the port: 2 bytes, network order.
        let cmp = super::super::wire::attr(&exprs[7].1, 3).unwrap();
        assert_eq!(super::super::wire::attr(cmp, DATA_VALUE), Some(&8080u16.to_be_bytes()[..]));
        // The comment, in the userdata.
        let udata = super::super::wire::attr(&msgs[0], RULE_USERDATA).unwrap();
        assert_eq!(udata, b"\x00\x20nk-port ep1 tcp 4 10.0.0.1 8080\x00");
    }

    #[test]
    fn prefixes_load_what_nft_loads() {
        let rule = |prefix: &str| {
            let (addr, len) = prefix.split_once('/').unwrap();
            serde_json::json!({"nftables": [{"add": {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                           "right": {"prefix": {"addr": addr, "len": len.parse::<u32>().unwrap()}}}}]}}}]})
        };
        // Byte-aligned: only the covered bytes. Otherwise: the whole field, masked.
        for (prefix, load, masked) in [("10.88.0.0/16", 2, false), ("10.90.16.0/21", 4, true), ("0.0.0.0/0", 0, false)]
        {
            let b = batch_of(&rule(prefix)).unwrap();
            let exprs = exprs_of(&messages(&b.w.buf)[0]);
            let payload = exprs.iter().find(|(n, _)| n == "payload");
            match payload {
                Some((_, data)) => {
                    let len = super::super::wire::attr(data, 4).and_then(super::super::wire::be32).unwrap();
                    assert_eq!(len, load, "{prefix}");
                }
                None => assert_eq!(load, 0, "{prefix}"),
            }
            assert_eq!(exprs.iter().any(|(n, _)| n == "bitwise"), masked, "{prefix}");
        }
        let bad = serde_json::json!({"nftables": [{"add": {"rule": {"family": "inet", "table": "t", "chain": "c",
            "expr": [{"limit": {"rate": 1}}]}}}]});
        let e = batch_of(&bad).unwrap_err();
        assert!(e.source.to_string().contains("unsupported statement"), "{}", e.source);
    }
}

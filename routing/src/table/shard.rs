//! The published form of a table (docs/design.md, "The published table"): a JSON manifest plus
//! zstd-compressed binary shards, each named in the manifest with its SHA-256.
//!
//! - `base.zst` holds the accepted spaces and the connectors.
//! - `addresses-III-of-NNN.zst` hold contact addresses, partitioned by a
//!   stable hash (FNV-1a 64) of the contact's name, so that all addresses of
//!   one contact share a shard: one changed contact rewrites one shard and
//!   the manifest. NNN is a power of two chosen from the table size, so the
//!   count changes only when the table doubles or halves.
//!
//! - `grants.json`, when there are SendingGrants: who may send, as
//!   validated specs (principals by reference: a Secret's name, never its
//!   content), readable in `kubectl get configmap -o yaml`.
//!
//! Every key is a valid ConfigMap key; the manifest goes in `data`, shards in
//! `binaryData`.

use super::codec::{DecodeError, Reader, Writer};
use super::{
    AddressRoute, ConnectorRoute, RoutingTable, SmartHost, SpaceAction, SpaceRoute, Table,
};
use crate::crd::TlsMode;
use crate::pattern::DomainPattern;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub const SCHEMA: &str = "mailroute.io/table/v1";
pub const MANIFEST_KEY: &str = "manifest.json";
const BASE_KEY: &str = "base.zst";
const GRANTS_KEY: &str = "grants.json";
/// Largest compressed shard: leaves room in a 1 MiB ConfigMap for the manifest.
pub const SHARD_LIMIT: usize = 768 * 1024;
/// Uncompressed bytes aimed at per address shard when choosing the count.
const RAW_PER_SHARD: usize = 2 * 1024 * 1024;
/// A shard that inflates beyond this is refused (a damaged or hostile table).
const MAX_RAW_SHARD: usize = 256 * 1024 * 1024;
const ZSTD_LEVEL: i32 = 2;
const BASE_MAGIC: &[u8] = b"MRTB1";
const ADDR_MAGIC: &[u8] = b"MRTA2";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub schema: String,
    /// SHA-256 over every shard's key and hash: the table's content hash.
    pub version: String,
    pub counts: ManifestCounts,
    pub shards: Vec<ManifestShard>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestCounts {
    pub address_spaces: u64,
    pub connectors: u64,
    pub addresses: u64,
    pub address_shards: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub grants: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `grants.json`: each grant's name and the spec it reads back from.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishedGrants {
    grants: Vec<PublishedGrant>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishedGrant {
    name: String,
    spec: crate::crd::SendingGrantSpec,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestShard {
    pub key: String,
    pub sha256: String,
    pub bytes: u64,
}

impl Manifest {
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The files of a published table, keyed as ConfigMap keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedTable {
    pub manifest: Manifest,
    /// Every file, the manifest (`manifest.json`) included, by key.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl EncodedTable {
    pub fn total_bytes(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// FNV-1a 64: stable across platforms and versions, which shard placement needs.
fn shard_of(key: &str, count: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % count as u64) as usize
}

fn address_key(index: usize, count: usize) -> String {
    format!("addresses-{index:03}-of-{count:03}.zst")
}

/// One zstd context for all shards: creating one per shard costs more than
/// compressing a small shard.
struct Compressor(zstd::bulk::Compressor<'static>);

impl Compressor {
    fn new() -> Compressor {
        Compressor(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd context"))
    }

    fn compress(&mut self, raw: &[u8]) -> Vec<u8> {
        self.0
            .compress(raw)
            .expect("zstd compression of an in-memory buffer")
    }
}

/// Encodes a table into its published files. Deterministic: equal tables
/// give equal bytes.
pub fn encode(table: &Table) -> EncodedTable {
    let mut zstd = Compressor::new();
    let base = zstd.compress(&encode_base(table));
    let raw_size: usize = table
        .addresses
        .iter()
        .map(|a| a.address.len() + a.contact.len() + a.target.len() + 4)
        .sum();
    let mut count = (raw_size / RAW_PER_SHARD + 1).next_power_of_two();
    let address_shards = loop {
        let shards = encode_address_shards(&table.addresses, count, &mut zstd);
        if shards.iter().all(|s| s.len() <= SHARD_LIMIT) {
            break shards;
        }
        count *= 2;
    };

    let mut files = BTreeMap::new();
    let mut shards = Vec::with_capacity(1 + address_shards.len());
    let mut add = |key: String, bytes: Vec<u8>| {
        shards.push(ManifestShard {
            key: key.clone(),
            sha256: sha256_hex(&bytes),
            bytes: bytes.len() as u64,
        });
        files.insert(key, bytes);
    };
    add(BASE_KEY.to_owned(), base);
    for (i, bytes) in address_shards.into_iter().enumerate() {
        add(address_key(i, count), bytes);
    }
    if !table.grants.is_empty() {
        let published = PublishedGrants {
            grants: table
                .grants
                .iter()
                .map(|g| PublishedGrant {
                    name: g.name.clone(),
                    spec: g.to_spec(),
                })
                .collect(),
        };
        let mut json = serde_json::to_vec_pretty(&published).expect("grants serialise");
        json.push(b'\n');
        add(GRANTS_KEY.to_owned(), json);
    }
    let manifest = Manifest {
        schema: SCHEMA.to_owned(),
        version: content_version(&shards),
        counts: ManifestCounts {
            address_spaces: table.spaces.len() as u64,
            connectors: table.connectors.len() as u64,
            addresses: table.addresses.len() as u64,
            address_shards: count as u64,
            grants: table.grants.len() as u64,
        },
        shards,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    json.push(b'\n');
    files.insert(MANIFEST_KEY.to_owned(), json);
    EncodedTable { manifest, files }
}

fn content_version(shards: &[ManifestShard]) -> String {
    let mut lines = String::new();
    for s in shards {
        lines.push_str(&format!("{} {}\n", s.key, s.sha256));
    }
    sha256_hex(lines.as_bytes())
}

fn encode_base(table: &Table) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(BASE_MAGIC);
    w.varint(table.spaces.len() as u64);
    for s in &table.spaces {
        w.str(&s.pattern.to_string());
        w.str(&s.name);
        match &s.action {
            SpaceAction::Authoritative => w.u8(0),
            SpaceAction::InternalRelay => w.u8(1),
            SpaceAction::ExternalRelay => w.u8(2),
            SpaceAction::RewriteTo(d) => {
                w.u8(3);
                w.str(d);
            }
        }
        w.bool(s.loops);
    }
    w.varint(table.connectors.len() as u64);
    for c in &table.connectors {
        w.str(&c.name);
        w.varint(c.address_spaces.len() as u64);
        for (p, cost) in &c.address_spaces {
            w.str(&p.to_string());
            w.varint(u64::from(*cost));
        }
        w.varint(c.smart_hosts.len() as u64);
        for h in &c.smart_hosts {
            w.str(&h.host);
            w.varint(u64::from(h.port));
            w.bool(h.mx_lookup);
        }
        w.u8(match c.tls_mode {
            TlsMode::None => 0,
            TlsMode::Opportunistic => 1,
            TlsMode::Required => 2,
        });
        w.bool(c.tls_verify);
        w.opt_str(c.auth_secret.as_deref());
        w.bool(c.max_message_size.is_some());
        if let Some(n) = c.max_message_size {
            w.varint(n);
        }
        w.bool(c.loops);
    }
    w.buf
}

/// Each shard holds records of one contact: name, target, loop flag, then
/// its addresses, so a contact's shared fields are written (and loaded) once.
fn encode_address_shards(
    addresses: &[AddressRoute],
    count: usize,
    zstd: &mut Compressor,
) -> Vec<Vec<u8>> {
    let mut buckets: Vec<Vec<&AddressRoute>> = vec![Vec::new(); count];
    for a in addresses {
        buckets[shard_of(&a.contact, count)].push(a);
    }
    buckets
        .iter()
        .enumerate()
        .map(|(i, bucket)| {
            let raw: usize =
                bucket.iter().map(|a| a.address.len() + 1).sum::<usize>() + bucket.len() * 24;
            let mut w = Writer {
                buf: Vec::with_capacity(raw + 32),
            };
            w.bytes(ADDR_MAGIC);
            w.varint(i as u64);
            w.varint(count as u64);
            let records: Vec<&[&AddressRoute]> =
                bucket.chunk_by(|a, b| same_contact(a, b)).collect();
            w.varint(records.len() as u64);
            for record in records {
                let first = record[0];
                w.str(&first.contact);
                w.str(&first.target);
                w.bool(first.loops);
                w.varint(record.len() as u64);
                for a in record {
                    w.str(&a.address);
                }
            }
            zstd.compress(&w.buf)
        })
        .collect()
}

fn same_contact(a: &AddressRoute, b: &AddressRoute) -> bool {
    (Arc::ptr_eq(&a.contact, &b.contact) || a.contact == b.contact)
        && a.target == b.target
        && a.loops == b.loops
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    MissingFile(String),
    Manifest(String),
    Schema(String),
    Version { expected: String, actual: String },
    Hash { key: String },
    Shard { key: String, error: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::MissingFile(k) => write!(f, "{k}: missing"),
            LoadError::Manifest(e) => write!(f, "{MANIFEST_KEY}: {e}"),
            LoadError::Schema(s) => write!(
                f,
                "{MANIFEST_KEY}: unsupported schema {s:?} (this build reads {SCHEMA:?})"
            ),
            LoadError::Version { expected, actual } => write!(
                f,
                "{MANIFEST_KEY}: version {actual} does not match its shards ({expected})"
            ),
            LoadError::Hash { key } => write!(
                f,
                "{key}: SHA-256 differs from the manifest's (half-updated or damaged)"
            ),
            LoadError::Shard { key, error } => write!(f, "{key}: {error}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads and verifies a published table: the manifest's version must match
/// its shard list, every shard it names must be present with the named
/// hash, and every shard must decode and hold only what belongs in it.
/// `get` returns a file's bytes by key.
pub fn load<'f>(get: impl Fn(&str) -> Option<&'f [u8]>) -> Result<(Manifest, Table), LoadError> {
    let (manifest, table) = decode(get)?;
    let mut seen = hashbrown::HashSet::with_capacity(table.addresses.len());
    if let Some(dup) = table
        .addresses
        .iter()
        .find(|a| !seen.insert(a.address.as_str()))
    {
        return Err(duplicate(&dup.address));
    }
    drop(seen);
    Ok((manifest, table))
}

/// [`load`], indexed for resolution: the duplicate check and the index are
/// one pass, which is what a relay reloading a large table wants.
pub fn load_routing<'f>(
    get: impl Fn(&str) -> Option<&'f [u8]>,
) -> Result<(Manifest, RoutingTable), LoadError> {
    let (manifest, table) = decode(get)?;
    let routing = RoutingTable::try_new(table).map_err(|address| duplicate(&address))?;
    Ok((manifest, routing))
}

fn duplicate(address: &str) -> LoadError {
    LoadError::Manifest(format!("address {address} appears twice"))
}

/// Reads and verifies the files, without checking for duplicate addresses.
fn decode<'f>(get: impl Fn(&str) -> Option<&'f [u8]>) -> Result<(Manifest, Table), LoadError> {
    let raw = get(MANIFEST_KEY).ok_or_else(|| LoadError::MissingFile(MANIFEST_KEY.into()))?;
    let manifest = Manifest::from_json(raw).map_err(LoadError::Manifest)?;
    if manifest.schema != SCHEMA {
        return Err(LoadError::Schema(manifest.schema));
    }
    let expected = content_version(&manifest.shards);
    if manifest.version != expected {
        return Err(LoadError::Version {
            expected,
            actual: manifest.version,
        });
    }
    let count = manifest.counts.address_shards as usize;
    let mut keys: Vec<String> = vec![BASE_KEY.to_owned()];
    keys.extend((0..count).map(|i| address_key(i, count)));
    if manifest.counts.grants > 0 {
        keys.push(GRANTS_KEY.to_owned());
    }
    let listed: Vec<&str> = manifest.shards.iter().map(|s| s.key.as_str()).collect();
    if listed != keys.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(LoadError::Manifest(format!(
            "shard list {listed:?} does not match counts.addressShards {count} and counts.grants"
        )));
    }

    let mut table = Table::default();
    let mut zstd =
        zstd::bulk::Decompressor::new().map_err(|e| LoadError::Manifest(format!("zstd: {e}")))?;
    for (i, shard) in manifest.shards.iter().enumerate() {
        let bytes = get(&shard.key).ok_or_else(|| LoadError::MissingFile(shard.key.clone()))?;
        if bytes.len() as u64 != shard.bytes || sha256_hex(bytes) != shard.sha256 {
            return Err(LoadError::Hash {
                key: shard.key.clone(),
            });
        }
        let shard_err = |error: String| LoadError::Shard {
            key: shard.key.clone(),
            error,
        };
        if shard.key == GRANTS_KEY {
            table.grants = decode_grants(bytes).map_err(shard_err)?;
            continue;
        }
        // Frames carry their size: allocate exactly that, and refuse a bomb.
        let size = match zstd::zstd_safe::get_frame_content_size(bytes) {
            Ok(Some(n)) if n <= MAX_RAW_SHARD as u64 => n as usize,
            Ok(Some(n)) => {
                return Err(shard_err(format!(
                    "inflates to {n} bytes, over the {MAX_RAW_SHARD}-byte limit"
                )));
            }
            _ => return Err(shard_err("not a zstd frame with a known size".into())),
        };
        let raw = zstd
            .decompress(bytes, size)
            .map_err(|e| shard_err(format!("decompression failed: {e}")))?;
        let decoded = if i == 0 {
            decode_base(&raw, &mut table)
        } else {
            decode_addresses(&raw, i - 1, count, &mut table.addresses)
        };
        decoded.map_err(|e| shard_err(e.0))?;
    }
    let counts = &manifest.counts;
    if counts.address_spaces != table.spaces.len() as u64
        || counts.connectors != table.connectors.len() as u64
        || counts.addresses != table.addresses.len() as u64
        || counts.grants != table.grants.len() as u64
    {
        return Err(LoadError::Manifest("counts do not match the shards".into()));
    }
    Ok((manifest, table))
}

/// Reads `grants.json` back through the validation that compiled it.
fn decode_grants(bytes: &[u8]) -> Result<Vec<crate::grants::Grant>, String> {
    let published: PublishedGrants = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    published
        .grants
        .iter()
        .map(|g| {
            crate::grants::validate(&g.name, &g.spec).map_err(|e| format!("grant {}: {e}", g.name))
        })
        .collect()
}

fn pattern(s: &str) -> Result<DomainPattern, DecodeError> {
    DomainPattern::parse(s, true).map_err(|e| DecodeError(format!("pattern {s:?}: {e}")))
}

fn decode_base(raw: &[u8], table: &mut Table) -> Result<(), DecodeError> {
    let mut r = Reader::new(raw);
    r.expect(BASE_MAGIC)?;
    for _ in 0..r.count()? {
        let pattern = pattern(r.str()?)?;
        let name = r.str()?.to_owned();
        let action = match r.u8()? {
            0 => SpaceAction::Authoritative,
            1 => SpaceAction::InternalRelay,
            2 => SpaceAction::ExternalRelay,
            3 => SpaceAction::RewriteTo(r.str()?.to_owned()),
            n => return Err(DecodeError(format!("unknown space action {n}"))),
        };
        let loops = r.bool()?;
        table.spaces.push(SpaceRoute {
            pattern,
            name,
            action,
            loops,
        });
    }
    for _ in 0..r.count()? {
        let name = r.str()?.to_owned();
        let mut address_spaces = Vec::new();
        for _ in 0..r.count()? {
            let p = pattern(r.str()?)?;
            let cost =
                u32::try_from(r.varint()?).map_err(|_| DecodeError("cost out of range".into()))?;
            address_spaces.push((p, cost));
        }
        let mut smart_hosts = Vec::new();
        for _ in 0..r.count()? {
            let host = r.str()?.to_owned();
            let port =
                u16::try_from(r.varint()?).map_err(|_| DecodeError("port out of range".into()))?;
            let mx_lookup = r.bool()?;
            smart_hosts.push(SmartHost {
                host,
                port,
                mx_lookup,
            });
        }
        let tls_mode = match r.u8()? {
            0 => TlsMode::None,
            1 => TlsMode::Opportunistic,
            2 => TlsMode::Required,
            n => return Err(DecodeError(format!("unknown TLS mode {n}"))),
        };
        let tls_verify = r.bool()?;
        let auth_secret = r.opt_str()?.map(str::to_owned);
        let max_message_size = if r.bool()? { Some(r.varint()?) } else { None };
        let loops = r.bool()?;
        table.connectors.push(ConnectorRoute {
            name,
            address_spaces,
            smart_hosts,
            tls_mode,
            tls_verify,
            auth_secret,
            max_message_size,
            loops,
        });
    }
    r.finish()
}

fn decode_addresses(
    raw: &[u8],
    index: usize,
    count: usize,
    out: &mut Vec<AddressRoute>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(raw);
    r.expect(ADDR_MAGIC)?;
    if r.varint()? != index as u64 || r.varint()? != count as u64 {
        return Err(DecodeError(format!("not shard {index} of {count}")));
    }
    for _ in 0..r.count()? {
        let contact = r.str()?;
        if shard_of(contact, count) != index {
            return Err(DecodeError(format!(
                "MailContact/{contact} does not belong in this shard"
            )));
        }
        let contact: Arc<str> = contact.into();
        let target: Arc<str> = r.str()?.into();
        let loops = r.bool()?;
        let n = r.count()?;
        if n == 0 {
            return Err(DecodeError(format!(
                "MailContact/{contact} has no addresses"
            )));
        }
        out.reserve(n);
        for _ in 0..n {
            out.push(AddressRoute {
                address: r.str()?.to_owned(),
                contact: contact.clone(),
                target: target.clone(),
                loops,
            });
        }
    }
    r.finish()
}

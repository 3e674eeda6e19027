//! The first flight the probe sends: the client must speak first for its
//! data to ride in the SYN, and the server must answer it for a time to first
//! byte. `--http` sends a HEAD request, `--tls` a TLS ClientHello (the server
//! answers with its ServerHello), `--request` any text.

use std::io::Read;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Text,
    Http,
    Tls,
}

/// A minimal HTTP/1.1 HEAD request for `/`.
pub fn http_head(host: &str, port: u16) -> Vec<u8> {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    let authority = if port == 80 { host } else { format!("{host}:{port}") };
    format!("HEAD / HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tfo-probe\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A TLS ClientHello offering TLS 1.3 and 1.2 (RFC 8446 section 4.1.2), with
/// an X25519 key share, so that servers of either version answer it. The
/// handshake is never finished: the probe only times the server's answer.
/// `server_name` goes into SNI; `random` fills the random, the session id
/// (the middlebox compatibility mode of RFC 8446 D.4) and the key share.
pub fn tls_client_hello(server_name: Option<&str>, random: &[u8; 96]) -> Vec<u8> {
    const SUITES: [u16; 9] = [
        0x1301, 0x1302, 0x1303, // TLS 1.3: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305
        0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, // TLS 1.2: ECDHE with AEADs
    ];
    const GROUPS: [u16; 3] = [0x001d, 0x0017, 0x0018]; // x25519, secp256r1, secp384r1
    const SIGNATURES: [u16; 8] = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];

    let mut hello = vec![0x03, 0x03]; // legacy_version: TLS 1.2
    hello.extend_from_slice(&random[..32]);
    hello.push(32);
    hello.extend_from_slice(&random[32..64]);
    with_u16_length(&mut hello, |v| SUITES.iter().for_each(|s| v.extend_from_slice(&s.to_be_bytes())));
    hello.extend_from_slice(&[1, 0]); // compression methods: null only
    with_u16_length(&mut hello, |ext| {
        if let Some(name) = server_name {
            extension(ext, 0, |v| {
                with_u16_length(v, |list| {
                    list.push(0); // host_name
                    with_u16_length(list, |n| n.extend_from_slice(name.as_bytes()));
                })
            });
        }
        extension(ext, 10, |v| with_u16_length(v, |g| GROUPS.iter().for_each(|x| g.extend_from_slice(&x.to_be_bytes()))));
        extension(ext, 11, |v| v.extend_from_slice(&[1, 0])); // ec_point_formats: uncompressed
        extension(ext, 13, |v| with_u16_length(v, |s| SIGNATURES.iter().for_each(|x| s.extend_from_slice(&x.to_be_bytes()))));
        extension(ext, 23, |_| {}); // extended_master_secret
        extension(ext, 43, |v| v.extend_from_slice(&[4, 0x03, 0x04, 0x03, 0x03])); // supported_versions: 1.3, 1.2
        extension(ext, 45, |v| v.extend_from_slice(&[1, 1])); // psk_key_exchange_modes: psk_dhe_ke
        extension(ext, 51, |v| {
            with_u16_length(v, |shares| {
                shares.extend_from_slice(&0x001du16.to_be_bytes());
                with_u16_length(shares, |key| key.extend_from_slice(&random[64..96]));
            })
        });
    });

    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, legacy version TLS 1.0
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Appends what `fill` writes, preceded by its length as two bytes.
fn with_u16_length(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    fill(out);
    let len = (out.len() - at - 2) as u16;
    out[at..at + 2].copy_from_slice(&len.to_be_bytes());
}

fn extension(out: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(&kind.to_be_bytes());
    with_u16_length(out, fill);
}

/// Fresh random bytes for a ClientHello.
pub fn random() -> std::io::Result<[u8; 96]> {
    let mut bytes = [0u8; 96];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_request() {
        assert_eq!(
            http_head("example.test", 80),
            b"HEAD / HTTP/1.1\r\nHost: example.test\r\nUser-Agent: tfo-probe\r\nConnection: close\r\n\r\n"
        );
        assert!(String::from_utf8(http_head("::1", 8080)).unwrap().contains("Host: [::1]:8080\r\n"));
    }

    /// Walks the ClientHello as a TLS parser would: every length must match.
    #[test]
    fn client_hello_lengths_are_consistent() {
        let random: [u8; 96] = std::array::from_fn(|i| i as u8);
        for sni in [Some("example.test"), None] {
            let r = tls_client_hello(sni, &random);
            assert_eq!(&r[..3], &[0x16, 0x03, 0x01]);
            assert_eq!(usize::from(u16::from_be_bytes([r[3], r[4]])), r.len() - 5);
            let h = &r[5..];
            assert_eq!(h[0], 1);
            assert_eq!(u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize, h.len() - 4);
            let b = &h[4..];
            assert_eq!(&b[..2], &[3, 3]);
            assert_eq!(&b[2..34], &random[..32]);
            assert_eq!(b[34], 32);
            let mut at = 35 + 32;
            let suites = usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
            assert_eq!(&b[at + 2..at + 4], &[0x13, 0x01]);
            at += 2 + suites;
            assert_eq!(&b[at..at + 2], &[1, 0]);
            at += 2;
            let ext_len = usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
            at += 2;
            assert_eq!(at + ext_len, b.len());
            let mut kinds = vec![];
            while at < b.len() {
                kinds.push(u16::from_be_bytes([b[at], b[at + 1]]));
                at += 4 + usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]]));
            }
            assert_eq!(at, b.len());
            let expected: &[u16] = if sni.is_some() { &[0, 10, 11, 13, 23, 43, 45, 51] } else { &[10, 11, 13, 23, 43, 45, 51] };
            assert_eq!(kinds, expected);
            assert!(r.windows(32).any(|w| w == &random[64..96]), "key share missing");
        }
    }
}

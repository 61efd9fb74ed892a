//! A CA's private key from PEM: PKCS#8, or SEC1 (`EC PRIVATE KEY`, what `openssl ecparam
//! -genkey` writes), which is wrapped into PKCS#8 for rcgen (with ring, rcgen reads PKCS#8
//! only). Every copy made here is wiped.
use anyhow::{bail, Context, Result};
use rcgen::KeyPair;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

/// id-ecPublicKey, then the named curve.
const EC_P256: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const EC_P384: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

pub fn key_pair_from_pem(pem: &str) -> Result<KeyPair> {
    let key = rustls_pemfile::private_key(&mut pem.as_bytes())
        .context("not a PEM private key")?
        .context("no PEM private key found (expected PRIVATE KEY or EC PRIVATE KEY)")?;
    match &key {
        PrivateKeyDer::Pkcs8(_) => KeyPair::try_from(&key).context("not a P-256 or P-384 ECDSA key rcgen can sign with"),
        PrivateKeyDer::Sec1(sec1) => {
            let pkcs8 = Zeroizing::new(sec1_to_pkcs8(sec1.secret_sec1_der())?);
            KeyPair::try_from(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_slice()))).context("not a P-256 or P-384 ECDSA key")
        }
        _ => bail!("a PKCS#1 RSA key (RSA PRIVATE KEY): convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`"),
    }
}

/// PrivateKeyInfo { version 0, AlgorithmIdentifier { id-ecPublicKey, curve }, OCTET STRING sec1 }.
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>> {
    // ECPrivateKey ::= SEQUENCE { INTEGER 1, OCTET STRING privateKey, ... }: the private key's
    // length tells the curve.
    let scalar_len = sec1.get(..7).and_then(|h| match h {
        [0x30, n, 0x02, 0x01, 0x01, 0x04, len] if *n < 0x80 => Some(*len),
        [0x30, 0x81, _, 0x02, 0x01, 0x01, 0x04] => sec1.get(7).copied(),
        _ => None,
    });
    let curve = match scalar_len {
        Some(32) => EC_P256,
        Some(48) => EC_P384,
        _ => bail!("not a P-256 or P-384 EC private key"),
    };
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(der(0x30, curve));
    body.extend(der(0x04, sec1));
    Ok(der(0x30, &body))
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n @ 0..=0x7f => out.push(n as u8),
        n @ 0x80..=0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn sec1_and_pkcs8_pems_give_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let sec1 = dir.path().join("sec1.pem");
        let run = |args: &[&str]| assert!(std::process::Command::new("openssl").args(args).current_dir(dir.path()).status().unwrap().success());
        run(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", sec1.to_str().unwrap()]);
        run(&["pkcs8", "-topk8", "-nocrypt", "-in", "sec1.pem", "-out", "pkcs8.pem"]);
        let a = key_pair_from_pem(&std::fs::read_to_string(&sec1).unwrap()).unwrap();
        let b = key_pair_from_pem(&std::fs::read_to_string(dir.path().join("pkcs8.pem")).unwrap()).unwrap();
        assert_eq!(a.subject_public_key_info(), b.subject_public_key_info());
        run(&["genrsa", "-traditional", "-out", "rsa.pem", "2048"]);
        let e = key_pair_from_pem(&std::fs::read_to_string(dir.path().join("rsa.pem")).unwrap()).err().unwrap();
        assert!(e.to_string().contains("convert it to PKCS#8"), "{e}");
    }
}

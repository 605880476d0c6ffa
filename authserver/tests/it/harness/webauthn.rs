//! A software WebAuthn authenticator and client (what a browser and a platform
//! authenticator do together), written from the WebAuthn Level 3 and CTAP2 texts with
//! aws-lc-rs for ES256, independent of the server's WebAuthn library: it answers the
//! options the server sends with the JSON a browser's script posts.
//!
//! It keeps discoverable (resident) credentials, counts signatures (or not), and can be
//! told to lie the way an attacker's page would: another origin, another RP ID, an old
//! counter, no user verification.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// One credential the authenticator holds.
pub struct SoftCredential {
    pub id: Vec<u8>,
    key: EcdsaKeyPair,
    pub rp_id: String,
    pub user_handle: Vec<u8>,
    pub counter: u32,
}

/// The authenticator plus the client around it (origin, clientDataJSON).
pub struct SoftAuthenticator {
    /// The origin the "browser" reports in clientDataJSON.
    pub origin: String,
    pub credentials: Vec<SoftCredential>,
    /// Added to a credential's counter per signature; 0 = a passkey without a counter.
    pub counter_step: u32,
    /// Sets the UV flag (a PIN or biometric was checked).
    pub user_verified: bool,
    /// Backup eligible / backed up (a synced passkey).
    pub backup: bool,
    /// Signs for this RP ID instead of the one the options name (a phishing page).
    pub rp_id_override: Option<String>,
}

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;

impl SoftAuthenticator {
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            credentials: Vec::new(),
            counter_step: 1,
            user_verified: true,
            backup: false,
            rp_id_override: None,
        }
    }

    fn flags(&self) -> u8 {
        let mut f = UP;
        if self.user_verified {
            f |= UV;
        }
        if self.backup {
            f |= BE | BS;
        }
        f
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    /// `navigator.credentials.create({publicKey})` with the server's `{"publicKey": …}`:
    /// the JSON the page's script posts as `credential`.
    pub fn register(&mut self, options: &Value) -> Value {
        let pk = &options["publicKey"];
        let challenge = pk["challenge"].as_str().expect("challenge");
        let rp_id = self
            .rp_id_override
            .clone()
            .unwrap_or_else(|| pk["rp"]["id"].as_str().expect("rp.id").to_owned());
        let user_handle = URL_SAFE_NO_PAD
            .decode(pk["user"]["id"].as_str().expect("user.id"))
            .expect("user.id is base64url");
        let rng = SystemRandom::new();
        let mut id = vec![0u8; 16];
        rng.fill(&mut id).unwrap();
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let point = key.public_key().as_ref().to_vec();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        // COSE_Key (RFC 9052): kty EC2, alg ES256, crv P-256, x, y.
        let mut cose = cbor_head(5, 5);
        cose.extend(cbor_uint(1));
        cose.extend(cbor_uint(2));
        cose.extend(cbor_uint(3));
        cose.extend(cbor_nint(-7));
        cose.extend(cbor_nint(-1));
        cose.extend(cbor_uint(1));
        cose.extend(cbor_nint(-2));
        cose.extend(cbor_bytes(&point[1..33]));
        cose.extend(cbor_nint(-3));
        cose.extend(cbor_bytes(&point[33..65]));
        let mut auth_data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(self.flags() | AT);
        auth_data.extend(0u32.to_be_bytes());
        auth_data.extend([0u8; 16]); // AAGUID: none
        auth_data.extend(u16::try_from(id.len()).unwrap().to_be_bytes());
        auth_data.extend(&id);
        auth_data.extend(cose);
        let mut att = cbor_head(5, 3);
        att.extend(cbor_text("fmt"));
        att.extend(cbor_text("none"));
        att.extend(cbor_text("attStmt"));
        att.extend(cbor_head(5, 0));
        att.extend(cbor_text("authData"));
        att.extend(cbor_bytes(&auth_data));
        let client_data = self.client_data("webauthn.create", challenge);
        self.credentials.push(SoftCredential {
            id: id.clone(),
            key,
            rp_id,
            user_handle,
            counter: 0,
        });
        json!({
            "id": URL_SAFE_NO_PAD.encode(&id),
            "rawId": URL_SAFE_NO_PAD.encode(&id),
            "type": "public-key",
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(&att),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
                "transports": ["internal"],
            },
            "extensions": {"credProps": {"rk": true}},
        })
    }

    /// `navigator.credentials.get({publicKey})`: signs with the first credential the
    /// options allow (any of this RP's when `allowCredentials` is empty: discoverable).
    pub fn assert(&mut self, options: &Value) -> Value {
        let pk = &options["publicKey"];
        let challenge = pk["challenge"].as_str().expect("challenge").to_owned();
        let rp_id = pk["rpId"].as_str().expect("rpId").to_owned();
        let allowed: Vec<Vec<u8>> = pk["allowCredentials"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| URL_SAFE_NO_PAD.decode(c["id"].as_str().unwrap()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let index = self
            .credentials
            .iter()
            .position(|c| c.rp_id == rp_id && (allowed.is_empty() || allowed.contains(&c.id)))
            .expect("the authenticator holds a credential for this request");
        self.assert_with(index, &challenge)
    }

    /// Signs `challenge` with credential `index`, whatever the options said.
    pub fn assert_with(&mut self, index: usize, challenge: &str) -> Value {
        let flags = self.flags();
        let step = self.counter_step;
        let client_data = self.client_data("webauthn.get", challenge);
        let rp_override = self.rp_id_override.clone();
        let cred = &mut self.credentials[index];
        cred.counter += step;
        let rp_id = rp_override.unwrap_or_else(|| cred.rp_id.clone());
        let mut auth_data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(flags);
        auth_data.extend(cred.counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend(digest(&SHA256, &client_data).as_ref());
        let sig = cred.key.sign(&SystemRandom::new(), &signed).unwrap();
        json!({
            "id": URL_SAFE_NO_PAD.encode(&cred.id),
            "rawId": URL_SAFE_NO_PAD.encode(&cred.id),
            "type": "public-key",
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(&auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
                "signature": URL_SAFE_NO_PAD.encode(sig.as_ref()),
                "userHandle": URL_SAFE_NO_PAD.encode(&cred.user_handle),
            },
            "extensions": {},
        })
    }
}

fn cbor_head(major: u8, len: u64) -> Vec<u8> {
    let m = major << 5;
    match len {
        0..=23 => vec![m | u8::try_from(len).unwrap()],
        24..=0xff => vec![m | 0x18, u8::try_from(len).unwrap()],
        0x100..=0xffff => {
            let mut v = vec![m | 0x19];
            v.extend(u16::try_from(len).unwrap().to_be_bytes());
            v
        }
        _ => {
            let mut v = vec![m | 0x1a];
            v.extend(u32::try_from(len).unwrap().to_be_bytes());
            v
        }
    }
}

fn cbor_uint(n: u64) -> Vec<u8> {
    cbor_head(0, n)
}

/// A negative integer `n` (< 0): major type 1 with `-1 - n`.
fn cbor_nint(n: i64) -> Vec<u8> {
    cbor_head(1, u64::try_from(-1 - n).unwrap())
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = cbor_head(2, b.len() as u64);
    v.extend(b);
    v
}

fn cbor_text(s: &str) -> Vec<u8> {
    let mut v = cbor_head(3, s.len() as u64);
    v.extend(s.as_bytes());
    v
}

#[test]
fn cbor_encodes_the_rfc_8949_examples() {
    assert_eq!(cbor_uint(10), [0x0a]);
    assert_eq!(cbor_uint(500), [0x19, 0x01, 0xf4]);
    assert_eq!(cbor_nint(-7), [0x26]);
    assert_eq!(cbor_nint(-1), [0x20]);
    assert_eq!(cbor_text("fmt"), [0x63, b'f', b'm', b't']);
    assert_eq!(cbor_bytes(&[1, 2]), [0x42, 1, 2]);
    assert_eq!(cbor_head(5, 0), [0xa0]);
}

//! NATS JWTs (nats-io/jwt v2): `header.payload.signature`, each part base64url without padding,
//! the header `{"typ":"JWT","alg":"ed25519-nkey"}` and an Ed25519 signature by the issuer's nkey
//! over `header.payload`. Only the claims the auth callout exchanges are modelled.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use nkeys::KeyPair;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest as _, Sha512_256};

use crate::{Error, Result};

const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// The claims version nats-io/jwt v2 writes and nats-server expects.
pub const VERSION: u32 = 2;

/// The claims every NATS JWT carries, around a type-specific `nats` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims<N> {
    #[serde(rename = "jti", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "iat", default)]
    pub issued_at: i64,
    #[serde(rename = "iss", default)]
    pub issuer: String,
    #[serde(rename = "sub", default)]
    pub subject: String,
    #[serde(rename = "aud", default, skip_serializing_if = "String::is_empty")]
    pub audience: String,
    #[serde(rename = "exp", default, skip_serializing_if = "is_zero")]
    pub expires: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub nats: N,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The subset of the claims that the jti hash covers, as nats-io/jwt serializes `ClaimsData`.
#[derive(Serialize)]
struct Hashed<'a> {
    #[serde(rename = "aud", skip_serializing_if = "str::is_empty")]
    audience: &'a str,
    #[serde(rename = "exp", skip_serializing_if = "is_zero")]
    expires: i64,
    #[serde(rename = "iat", skip_serializing_if = "is_zero")]
    issued_at: i64,
    #[serde(rename = "iss", skip_serializing_if = "str::is_empty")]
    issuer: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "sub", skip_serializing_if = "str::is_empty")]
    subject: &'a str,
}

/// Signs `claims` as `signer`: sets the issuer to the signer's public key and the JWT id to the
/// base32 SHA-512/256 of the common claims, as nats-io/jwt does.
pub fn encode<N: Serialize>(claims: &mut Claims<N>, signer: &KeyPair) -> Result<String> {
    claims.issuer = signer.public_key();
    let hashed = serde_json::to_vec(&Hashed {
        audience: &claims.audience,
        expires: claims.expires,
        issued_at: claims.issued_at,
        issuer: &claims.issuer,
        name: &claims.name,
        subject: &claims.subject,
    })
    .map_err(|e| Error::Jwt(e.to_string()))?;
    claims.id = data_encoding::BASE32_NOPAD.encode(&Sha512_256::digest(hashed));
    let payload = serde_json::to_vec(claims).map_err(|e| Error::Jwt(e.to_string()))?;
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = signer.sign(signed.as_bytes())?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

#[derive(Deserialize)]
struct Header {
    typ: String,
    alg: String,
}

/// Decodes a JWT and verifies its signature against the public key it names as issuer. Whether
/// that issuer is trusted, and the times, are the caller's to judge.
pub fn decode<N: DeserializeOwned>(token: &str) -> Result<Claims<N>> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Jwt("expected three dot-separated parts".into()));
    };
    let part = |name: &str, text: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| Error::Jwt(format!("{name}: {e}")))
    };
    let parsed: Header = serde_json::from_slice(&part("header", header)?)
        .map_err(|e| Error::Jwt(format!("header: {e}")))?;
    if !parsed.typ.eq_ignore_ascii_case("jwt") || parsed.alg != "ed25519-nkey" {
        return Err(Error::Jwt(format!(
            "unsupported header typ {:?} alg {:?}",
            parsed.typ, parsed.alg
        )));
    }
    let claims: Claims<N> = serde_json::from_slice(&part("payload", payload)?)
        .map_err(|e| Error::Jwt(format!("payload: {e}")))?;
    let issuer = KeyPair::from_public_key(&claims.issuer).map_err(|_| Error::Signature)?;
    let signed_len = header.len() + 1 + payload.len();
    issuer
        .verify(
            &token.as_bytes()[..signed_len],
            &part("signature", signature)?,
        )
        .map_err(|_| Error::Signature)?;
    Ok(claims)
}

/// The `nats` section of the request nats-server sends on `$SYS.REQ.USER.AUTH`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub server_id: ServerId,
    /// The key the server made for this connection; the response and user JWT must name it.
    pub user_nkey: String,
    #[serde(default)]
    pub client_info: ClientInfo,
    #[serde(default)]
    pub connect_opts: ConnectOpts,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerId {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub host: String,
    /// The server's public nkey, which also signs the request.
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClientInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default)]
    pub id: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// What the client sent in its CONNECT; Whistle's clients send their token as `auth_token`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConnectOpts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(default)]
    pub protocol: i64,
}

/// The `nats` section of the callout's answer: a user JWT, or why the connection is refused.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuthorizationResponse {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
}

/// The `nats` section of a user JWT: permissions and limits (`-1` is unlimited).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "pub")]
    pub publish: SubjectPermission,
    #[serde(rename = "sub")]
    pub subscribe: SubjectPermission,
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SubjectPermission {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_claims() -> Claims<User> {
        Claims {
            id: String::new(),
            issued_at: 1_700_000_000,
            issuer: String::new(),
            subject: KeyPair::new_user().public_key(),
            audience: "WHISTLE".into(),
            expires: 1_700_000_060,
            name: "gw-150602001001001".into(),
            nats: User {
                publish: SubjectPermission {
                    allow: vec!["whistle.cmd.*.gw-150602001001001".into()],
                    deny: vec![],
                },
                subscribe: SubjectPermission {
                    allow: vec!["_INBOX_gw-150602001001001.>".into()],
                    deny: vec![">".into()],
                },
                subs: 100,
                data: -1,
                payload: 65536,
                kind: "user".into(),
                version: VERSION,
            },
        }
    }

    #[test]
    fn encoded_claims_decode_to_themselves_with_the_signer_as_issuer() {
        let account = KeyPair::new_account();
        let mut claims = user_claims();
        let token = encode(&mut claims, &account).unwrap();
        assert_eq!(claims.issuer, account.public_key());
        assert_eq!(claims.id.len(), 52, "base32 of 32 bytes, unpadded");
        let decoded: Claims<User> = decode(&token).unwrap();
        assert_eq!(decoded, claims);
        let header = token.split('.').next().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(header).unwrap(), HEADER.as_bytes());
        assert!(!token.contains('='), "no padding");
    }

    #[test]
    fn a_tampered_payload_or_foreign_signature_is_refused() {
        let account = KeyPair::new_account();
        let token = encode(&mut user_claims(), &account).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        let mut forged = user_claims();
        forged.nats.publish.allow = vec![">".into()];
        forged.issuer = account.public_key();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(matches!(decode::<User>(&tampered), Err(Error::Signature)));

        // Signed by another key but claiming the first as issuer.
        let other = encode(&mut user_claims(), &KeyPair::new_account()).unwrap();
        let other_sig = other.rsplit('.').next().unwrap();
        let swapped = format!("{}.{}.{}", parts[0], parts[1], other_sig);
        assert!(matches!(decode::<User>(&swapped), Err(Error::Signature)));

        assert!(matches!(decode::<User>("a.b"), Err(Error::Jwt(_))));
        assert!(matches!(
            decode::<User>(&format!("{token}.x")),
            Err(Error::Jwt(_))
        ));
    }

    #[test]
    fn an_unexpected_algorithm_is_refused() {
        let account = KeyPair::new_account();
        let token = encode(&mut user_claims(), &account).unwrap();
        let rest = token.split_once('.').unwrap().1;
        let none = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"none"}"#);
        assert!(matches!(
            decode::<User>(&format!("{none}.{rest}")),
            Err(Error::Jwt(_))
        ));
    }

    #[test]
    fn a_server_request_parses_with_its_token() {
        let server = KeyPair::new_server();
        let mut request = Claims {
            id: String::new(),
            issued_at: 1,
            issuer: String::new(),
            subject: KeyPair::new_account().public_key(),
            audience: "nats-authorization-request".into(),
            expires: 0,
            name: String::new(),
            nats: serde_json::json!({
                "server_id": {"name": "n", "host": "127.0.0.1", "id": server.public_key(), "version": "2.15.1"},
                "user_nkey": "UABC",
                "client_info": {"host": "127.0.0.1", "id": 7, "kind": "Client", "type": "nats"},
                "connect_opts": {"auth_token": "wst_x", "lang": "rust", "version": "0.51", "protocol": 1},
                "type": "authorization_request",
                "version": 2
            }),
        };
        let token = encode(&mut request, &server).unwrap();
        let decoded: Claims<AuthorizationRequest> = decode(&token).unwrap();
        assert_eq!(decoded.issuer, server.public_key());
        assert_eq!(decoded.nats.server_id.id, server.public_key());
        assert_eq!(
            decoded.nats.connect_opts.auth_token.as_deref(),
            Some("wst_x")
        );
        assert_eq!(decoded.nats.client_info.id, 7);
    }
}

//! JWT authentication: the token claims labstream understands, a verifier that accepts
//! only the one algorithm matching each configured public key, and key generation and
//! issuing for `labstream token`. A token that is not proven valid is never accepted.

mod claims;
mod error;
mod issue;
mod keys;
mod verify;

pub use claims::{Claims, Scope};
pub use error::{AuthError, KeyError, Result};
pub use issue::Issuer;
pub use keys::{KeyAlg, generate_keypair, jwks_from_public_pem};
pub use verify::{
    DEFAULT_AUDIENCE, DEFAULT_LEEWAY, Verifier, authorize, bearer_token, inspect_unverified,
};

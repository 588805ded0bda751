//! Who the user is at a broker: signing in (a static token, or single
//! sign-on through the broker's OpenID provider), keeping the session in
//! the OS keyring, and renewing it before it ends.

pub mod entra;
pub mod secrets;
pub mod session;
pub mod sso;

//! Test support for lifeboat's storage and EBS tests: real protocols against stand-ins started
//! by the tests themselves, only ever on 127.0.0.1.
//!
//! - [`Moto`]: a `moto_server` (S3 and EC2 emulator) per test, on a port the OS picks, killed
//!   when dropped. Tests own their server, so they run in parallel without sharing state.
//! - [`FaultProxy`]: an HTTP/1.1 reverse proxy in front of moto that fails chosen requests
//!   (an S3 or EC2 error, a reset connection, latency) or rewrites moto's answers, which is how
//!   tests make S3 fail mid-upload, throttle EC2, or keep a snapshot pending.
//! - [`Cli`]: the `lifeboat` binary run as an operator would, reaching only loopback stand-ins.

mod cli;
mod moto;
mod proxy;

pub use cli::{Cli, Run, file_config, s3_config};
pub use moto::{INSTALL_HINT, Moto};
pub use proxy::{Action, BODY_RECORDED, FaultProxy, RequestRecord, Rule, RuleId};

/// Text that zstd cannot shrink much (26 letters from a xorshift generator), for tests that
/// need archives of several multipart parts.
pub fn incompressible(seed: u64, len: usize) -> String {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + u8::try_from(x % 26).expect("below 26"))
        })
        .collect()
}

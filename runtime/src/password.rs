//! Password checks against stored argon2 hashes, bounded in how many run at once.
//!
//! One argon2id verification with the crate's default parameters works through 19 MiB of
//! memory and tens of milliseconds of CPU. Run on tokio's blocking pool (up to 512 threads),
//! logins that miss their caches at the same moment (many users, an expired cache, or wrong
//! passwords from many addresses, each under its failure limit) would each take that much at
//! once: 500 of them, 9.5 GiB. [`verify`] lets at most one verification per CPU run; the rest
//! wait their turn, so memory stays at `CPUs × 19 MiB` and the other tasks keep the CPUs.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
use tokio::sync::Semaphore;

/// Verifications allowed at once: one per CPU the process may use.
#[must_use]
pub fn max_concurrent() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(max_concurrent()))
}

/// Whether `password` matches the PHC string `phc` (false for a malformed hash), waiting for
/// one of [`max_concurrent`] slots first.
pub async fn verify(phc: String, password: String) -> bool {
    let Ok(_slot) = slots().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc).is_ok_and(|p| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &p)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, SaltString};

    #[tokio::test]
    async fn verifies_and_never_runs_more_than_one_per_cpu() {
        let salt = SaltString::encode_b64(b"sitecast-salt-16").unwrap();
        let phc = argon2::Argon2::default()
            .hash_password(b"right", &salt)
            .unwrap()
            .to_string();
        assert!(verify(phc.clone(), "right".into()).await);
        assert!(!verify(phc.clone(), "wrong".into()).await);
        assert!(!verify("not a hash".into(), "right".into()).await);
        // Many at once: every answer right, and never more slots taken than there are.
        let all: Vec<_> = (0..3 * max_concurrent())
            .map(|i| {
                let phc = phc.clone();
                tokio::spawn(async move {
                    verify(phc, if i % 2 == 0 { "right" } else { "x" }.into()).await == (i % 2 == 0)
                })
            })
            .collect();
        let mut taken_max = 0;
        for h in all {
            taken_max = taken_max.max(max_concurrent() - slots().available_permits());
            assert!(h.await.unwrap());
        }
        assert!(taken_max <= max_concurrent());
        assert_eq!(slots().available_permits(), max_concurrent());
    }
}

//! The password policy, applied wherever a password is set (today: signup).
//!
//! - **Length:** 8 to 128 bytes (UTF-8). The lower bound is the usual floor; the upper bound
//!   keeps the hashing input small and is far above any passphrase people type.
//! - **Strength:** zxcvbn (Dropbox's estimator: common-password lists, dictionary words, names,
//!   keyboard walks, repeats, sequences, dates, l33t) must rate the password at least
//!   [`MIN_SCORE`] of 4, i.e. more than 10^8 guesses. The account's email (and its local part)
//!   and the organization name count as known words, so `acme-acme-acme` is weak for Acme.
//!
//! Rules such as "one digit, one symbol" are deliberately absent: they push people to
//! `Password1!` while refusing long passphrases (NIST SP 800-63B §5.1.1.2 says the same).

use crate::error::ApiError;

/// Shortest accepted password, in bytes.
pub const MIN_BYTES: usize = 8;
/// Longest accepted password, in bytes.
pub const MAX_BYTES: usize = 128;
/// Lowest accepted zxcvbn score (0-4). 3 means "more than 10^8 guesses": safe against online
/// guessing by a wide margin, and against offline guessing of an argon2id hash for a long time.
pub const MIN_SCORE: u8 = 3;

/// Checks `password` against the policy. `user_inputs` are words an attacker would try first
/// for this account (email, organization name). The error is a 400 on `password` that says why
/// and, when the estimator has one, how to do better.
pub fn check(password: &str, user_inputs: &[&str]) -> Result<(), ApiError> {
    if password.len() < MIN_BYTES {
        return Err(ApiError::invalid(
            "password",
            format_args!("must be at least {MIN_BYTES} characters long"),
        ));
    }
    if password.len() > MAX_BYTES {
        return Err(ApiError::invalid(
            "password",
            format_args!("must be at most {MAX_BYTES} bytes long"),
        ));
    }
    let mut inputs: Vec<&str> = user_inputs
        .iter()
        .copied()
        .filter(|s| !s.trim().is_empty())
        .collect();
    // The local part of an email is the likelier guess ("alice" for alice@example.com).
    for input in user_inputs {
        if let Some((local, _)) = input.split_once('@') {
            inputs.push(local);
        }
    }
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    let score = u8::from(estimate.score());
    if score >= MIN_SCORE {
        return Ok(());
    }
    let mut why =
        format!("is too easy to guess (strength {score} of 4, at least {MIN_SCORE} needed)");
    if let Some(feedback) = estimate.feedback() {
        let advice = feedback.to_string();
        let advice = advice.trim();
        if !advice.is_empty() {
            why.push_str(": ");
            why.push_str(advice);
        }
    } else {
        why.push_str(": use a few uncommon words together");
    }
    Err(ApiError::invalid("password", why))
}

/// [`check`] on the blocking pool: the estimator takes a few milliseconds (tens on its first
/// call), too long to hold an async worker.
pub async fn check_blocking(password: String, user_inputs: Vec<String>) -> Result<(), ApiError> {
    tokio::task::spawn_blocking(move || {
        let inputs: Vec<&str> = user_inputs.iter().map(String::as_str).collect();
        check(&password, &inputs)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("password check task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(password: &str, inputs: &[&str]) -> Option<String> {
        check(password, inputs).err().map(|e| e.to_string())
    }

    #[test]
    fn weak_and_common_passwords_are_refused_with_a_reason() {
        for weak in [
            "12345678",
            "password",
            "        ",
            "P@ssw0rd!",
            "qwertyuiop",
            "aaaaaaaaaaaa",
        ] {
            let msg = message(weak, &[]).unwrap_or_else(|| format!("{weak:?} was accepted"));
            assert!(msg.starts_with("password: is too easy to guess"), "{msg}");
        }
        let msg = message("password", &[]).unwrap_or_default();
        assert!(
            msg.contains("common password"),
            "the estimator's warning: {msg}"
        );
    }

    #[test]
    fn the_account_s_own_words_count_as_known() {
        let inputs = [
            "zebulon.quartermain@example.com",
            "Quartermain Zebulon Works",
        ];
        // Strong for anyone else, weak for this account.
        for own in [
            "zebulon.quartermain",
            "zebulon.quartermain@example.com",
            "Quartermain Zebulon Works",
        ] {
            assert_eq!(message(own, &[]), None, "{own:?} alone");
            let msg = message(own, &inputs).unwrap_or_else(|| format!("{own:?} was accepted"));
            assert!(msg.starts_with("password: is too easy to guess"), "{msg}");
        }
    }

    #[test]
    fn length_bounds_are_in_bytes() {
        assert_eq!(
            message("Ab1!x", &[]).as_deref(),
            Some("password: must be at least 8 characters long")
        );
        let long = "correct horse battery staple ".repeat(5);
        assert_eq!(
            message(&long, &[]).as_deref(),
            Some("password: must be at most 128 bytes long")
        );
        // 65 characters, but 130 bytes.
        assert_eq!(
            message(&"ü".repeat(65), &[]).as_deref(),
            Some("password: must be at most 128 bytes long")
        );
        // Exactly 128 bytes is fine.
        let at_limit = format!("{}kettle mosai", "correct horse battery staple ".repeat(4));
        assert_eq!(at_limit.len(), MAX_BYTES);
        assert_eq!(message(&at_limit, &[]), None);
    }

    #[test]
    fn passphrases_pass() {
        for good in [
            "correct horse battery staple",
            "correct horse battery",
            "Tr0ub4dor&3",
            "kettle mosaic vinegar",
        ] {
            assert_eq!(
                message(good, &["ada@example.com", "Acme"]),
                None,
                "{good:?}"
            );
        }
    }
}

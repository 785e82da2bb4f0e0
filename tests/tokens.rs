//! Tokens cannot be forged: signed tickets, passes and sessions are mutated at random (a
//! flipped bit, a changed, dropped or added character, a swapped signature or payload) and no
//! mutation is accepted. `TOKEN_MUTATIONS` sets the number of cases (default 30,000 per kind;
//! the benchmark run in the README uses 1,000,000).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reservation::domain::tokens::{Pass, Session, Signer, Ticket};

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fn mutate(rng: &mut ChaCha8Rng, token: &str, other: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    match rng.gen_range(0..6) {
        0 => {
            let i = rng.gen_range(0..b.len());
            b[i] ^= 1 << rng.gen_range(0..8);
        }
        1 => {
            let i = rng.gen_range(0..b.len());
            b[i] = ALPHABET[rng.gen_range(0..ALPHABET.len())];
        }
        2 => {
            b.remove(rng.gen_range(0..b.len()));
        }
        3 => {
            let i = rng.gen_range(0..=b.len());
            b.insert(i, ALPHABET[rng.gen_range(0..ALPHABET.len())]);
        }
        4 => {
            // This token's payload under another token's signature.
            let (p, _) = token.split_once('.').unwrap();
            let (_, s) = other.split_once('.').unwrap();
            b = format!("{p}.{s}").into_bytes();
        }
        _ => {
            // A few random edits at once.
            for _ in 0..rng.gen_range(2..6) {
                let i = rng.gen_range(0..b.len());
                b[i] = ALPHABET[rng.gen_range(0..ALPHABET.len())];
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn cases() -> usize {
    std::env::var("TOKEN_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000)
}

#[test]
fn no_mutated_ticket_pass_or_session_is_accepted() {
    let signer = Signer::new(b"the server's secret");
    let mut rng = ChaCha8Rng::seed_from_u64(20210712);
    let n = cases();
    let mut tried = 0usize;
    for i in 0..n {
        let seq = rng.gen_range(0..10_000_000u64);
        let ticket = signer.ticket(&Ticket { cohort_id: 1, seq });
        let other_ticket = signer.ticket(&Ticket {
            cohort_id: 1,
            seq: seq + 1,
        });
        let pass = signer.pass(&Pass {
            cohort_id: 1,
            seq,
            expires_at: 4_000_000_000,
        });
        let other_pass = signer.pass(&Pass {
            cohort_id: 2,
            seq,
            expires_at: 4_000_000_000,
        });
        let session = Session {
            cohort_id: 1,
            seq,
            citizen_key: format!("{i:064x}"),
            birth_date: "1965-03-01".into(),
            expires_at: 4_000_000_000,
            masked_name: "김*영".into(),
            phone: None,
        };
        let session_token = signer.session(&session);
        let other_session = signer.session(&Session {
            cohort_id: 2,
            ..session.clone()
        });

        let m = mutate(&mut rng, &ticket, &other_ticket);
        if m != ticket {
            assert!(
                signer.check_ticket(&m).is_err(),
                "forged ticket accepted: {m}"
            );
            tried += 1;
        }
        let m = mutate(&mut rng, &pass, &other_pass);
        if m != pass {
            assert!(
                signer.check_pass(&m, 0).is_err(),
                "forged pass accepted: {m}"
            );
            tried += 1;
        }
        let m = mutate(&mut rng, &session_token, &other_session);
        if m != session_token {
            assert!(
                signer.check_session(&m, 0).is_err(),
                "forged session accepted: {m}"
            );
            tried += 1;
        }
    }
    println!("token mutations tried: {tried}, accepted: 0");
    assert!(tried > n * 3 * 9 / 10, "most cases were real mutations");
}

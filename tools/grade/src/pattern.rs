//! The bodies the grader sends and expects: byte `i` of every body is `ALPHABET[i % 61]`, so a
//! body of any length is made and checked as a stream, in bounded memory, and a lost, repeated
//! or reordered piece shows at its exact offset (61 is prime: no buffer size aligns with it).

const ALPHABET: &[u8; 61] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678";

/// Fills `buf` with the pattern's bytes from body offset `offset` on.
pub fn fill(buf: &mut [u8], offset: u64) {
    let mut done = 0;
    // A block at a time from a repeated copy: memcpy speed even in a debug build.
    REPEATED.with(|rep| {
        while done < buf.len() {
            let at = ((offset + done as u64) % 61) as usize;
            let take = (buf.len() - done).min(61 * 1000);
            buf[done..done + take].copy_from_slice(&rep[at..at + take]);
            done += take;
        }
    });
}

thread_local! {
    /// The alphabet repeated 1100 times: any offset's next 61,000 bytes are one slice of it.
    static REPEATED: Vec<u8> = ALPHABET.iter().copied().cycle().take(61 * 1100).collect();
}

/// The pattern's first `len` bytes.
pub fn body(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(&mut v, 0);
    v
}

/// Checks a piece of a body received at `offset`; the offset of the first wrong byte.
pub fn first_mismatch(piece: &[u8], offset: u64) -> Option<u64> {
    // Compared a block at a time against a repeated copy of the alphabet: memcmp speed even in
    // a debug build, which checks 100 MiB in well under a second.
    REPEATED.with(|rep| {
        let mut done = 0usize;
        while done < piece.len() {
            let at = ((offset + done as u64) % 61) as usize;
            let take = (piece.len() - done).min(61 * 1000);
            if piece[done..done + take] != rep[at..at + take] {
                let wrong = piece[done..done + take]
                    .iter()
                    .zip(&rep[at..at + take])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Some(offset + (done + wrong) as u64);
            }
            done += take;
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_check_at_their_offset() {
        let whole = body(200_000);
        assert_eq!(first_mismatch(&whole, 0), None);
        assert_eq!(first_mismatch(&whole[70_001..], 70_001), None);
        assert_eq!(first_mismatch(&whole[5..], 4), Some(4));
        let mut wrong = whole.clone();
        wrong[123_456] = b'!';
        assert_eq!(first_mismatch(&wrong, 0), Some(123_456));
    }
}

//! A thread's spare head parts: the fields and strings of the heads it dropped last, kept so
//! that the next parse fills them instead of allocating.
//!
//! Every request makes two heads (the client's request and the backend's response), and an
//! owned head is a `String` and a `Vec` for each field, plus a few more: 23 of stage 5's 26.3
//! allocations a request against `ab -k` and nginx (notes.md). A worker parses a head, serves
//! it and drops it, over and over, so the parts of the last two heads a thread dropped are
//! nearly always the right size for the next two. Heads stay owned (the phases and the cache
//! use them as they are); only where their memory comes from changes.
//!
//! Bounded, since every thread keeps its own: two field lists of at most
//! [`MAX_KEPT_FIELDS`] fields and [`MAX_KEPT_BYTES`] bytes of names and values, and
//! [`MAX_KEPT_STRINGS`] strings of at most [`MAX_KEPT_STRING`] bytes; anything larger is freed
//! as before. At most about 8 KiB a thread (2 x (32 fields of 48 bytes + 2 KiB) + 4 x 256
//! bytes), a few hundred bytes for the heads of `wrk` and nginx: about 0.5 MiB at most for
//! stage 5's 64 workers, and for stage 3, whose thread per connection keeps its own while the
//! connection lives, up to 8 MiB with 1,024 connections whose heads were all that large.

use std::cell::RefCell;

use super::Header;

/// Field lists kept: a worker holds one request head and one response head at a time.
const MAX_KEPT_LISTS: usize = 2;
/// Fields a kept list has room for (its capacity, not its length).
const MAX_KEPT_FIELDS: usize = 32;
/// Bytes of the names and values of a kept list's fields, together (their capacities): a head
/// with large cookies is freed rather than held by an idle thread.
const MAX_KEPT_BYTES: usize = 2 * 1024;
/// Strings kept: a method, a target and a reason phrase a request.
const MAX_KEPT_STRINGS: usize = 4;
/// The largest string kept; longer targets are freed.
const MAX_KEPT_STRING: usize = 256;

struct Spares {
    /// Lists with their old fields still in them: a fill reuses each field's capacity.
    lists: Vec<Vec<Header>>,
    /// Emptied strings.
    strings: Vec<String>,
}

thread_local! {
    static SPARES: RefCell<Spares> = const {
        RefCell::new(Spares {
            lists: Vec::new(),
            strings: Vec::new(),
        })
    };
}

/// Runs `f` on this thread's spares; `None` while the thread is ending (its spares are gone).
fn with_spares<T>(f: impl FnOnce(&mut Spares) -> T) -> Option<T> {
    SPARES
        .try_with(|spares| spares.try_borrow_mut().ok().map(|mut s| f(&mut s)))
        .ok()
        .flatten()
}

/// Owns `fields` in a list, reusing a kept list and its fields' memory where there is one.
pub fn own_fields(fields: &[httparse::Header<'_>]) -> Vec<Header> {
    let mut list = with_spares(|s| s.lists.pop()).flatten().unwrap_or_default();
    list.truncate(fields.len());
    for (kept, field) in list.iter_mut().zip(fields) {
        kept.name.clear();
        kept.name.push_str(field.name);
        kept.value.clear();
        kept.value.extend_from_slice(field.value);
    }
    let reused = list.len();
    list.extend(fields[reused..].iter().map(|field| Header {
        name: field.name.to_owned(),
        value: field.value.to_vec(),
    }));
    list
}

/// Owns `text`, in a kept string's memory where there is one.
pub fn own_str(text: &str) -> String {
    let mut owned = with_spares(|s| s.strings.pop())
        .flatten()
        .unwrap_or_default();
    owned.push_str(text);
    owned
}

/// Keeps a dropped head's field list for the next parse on this thread, if it is small.
pub fn keep_fields(list: Vec<Header>) {
    // Capacity, not length: a phase may have removed fields from a long list.
    if list.capacity() == 0 || list.capacity() > MAX_KEPT_FIELDS {
        return;
    }
    let bytes: usize = list
        .iter()
        .map(|h| h.name.capacity() + h.value.capacity())
        .sum();
    if bytes > MAX_KEPT_BYTES {
        return;
    }
    with_spares(|s| {
        if s.lists.len() < MAX_KEPT_LISTS {
            s.lists.push(list);
        }
    });
}

/// Keeps a dropped head's string for the next parse on this thread, if it is small.
pub fn keep_str(mut text: String) {
    if text.capacity() == 0 || text.capacity() > MAX_KEPT_STRING {
        return;
    }
    text.clear();
    with_spares(|s| {
        if s.strings.len() < MAX_KEPT_STRINGS {
            s.strings.push(text);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(pairs: &[(&'a str, &'a [u8])]) -> Vec<httparse::Header<'a>> {
        pairs
            .iter()
            .map(|&(name, value)| httparse::Header { name, value })
            .collect()
    }

    fn owned(list: &[Header]) -> Vec<(&str, &[u8])> {
        list.iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()))
            .collect()
    }

    #[test]
    fn a_kept_list_is_refilled_to_exactly_the_new_fields() {
        std::thread::spawn(|| {
            let long = fields(&[("Host", b"a.test"), ("Accept", b"*/*"), ("X-A", b"1")]);
            let first = own_fields(&long);
            let name_memory = first[0].name.as_ptr();
            keep_fields(first);
            // Fewer fields than the kept list: the rest of it is cut off, none left over.
            let short = own_fields(&fields(&[("Via", b"1.1 x")]));
            assert_eq!(owned(&short), [("Via", &b"1.1 x"[..])]);
            assert_eq!(
                short[0].name.as_ptr(),
                name_memory,
                "the field's memory is reused"
            );
            keep_fields(short);
            // More fields than the kept list: the extra ones are made new.
            let more = own_fields(&long);
            assert_eq!(
                owned(&more),
                [("Host", &b"a.test"[..]), ("Accept", b"*/*"), ("X-A", b"1")]
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn strings_come_back_empty_and_large_parts_are_not_kept() {
        std::thread::spawn(|| {
            keep_str("GET".to_owned());
            assert_eq!(own_str("POST"), "POST");
            keep_str("x".repeat(MAX_KEPT_STRING + 1));
            assert_eq!(own_str(""), "");
            assert!(with_spares(|s| s.strings.is_empty()).unwrap());

            let big = vec![b'v'; MAX_KEPT_BYTES];
            keep_fields(own_fields(&fields(&[("Cookie", &big)])));
            let many: Vec<_> = (0..=MAX_KEPT_FIELDS).map(|_| ("X", &b"1"[..])).collect();
            keep_fields(own_fields(&fields(&many)));
            let mut emptied = own_fields(&fields(&many));
            emptied.truncate(1);
            keep_fields(emptied);
            assert!(with_spares(|s| s.lists.is_empty()).unwrap());
            for _ in 0..=MAX_KEPT_LISTS {
                keep_fields(vec![Header {
                    name: "X".to_owned(),
                    value: b"1".to_vec(),
                }]);
            }
            assert_eq!(with_spares(|s| s.lists.len()).unwrap(), MAX_KEPT_LISTS);
        })
        .join()
        .unwrap();
    }
}

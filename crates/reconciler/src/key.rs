//! [`IdKey`]: a Uniqueid or Linkedid as an index key, stored inline when short.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

const INLINE: usize = 22;

/// An id stored inline when it fits in 22 bytes (Asterisk's `1795520552.75560` is 16), so that comparing
/// keys during a lookup reads only the table's own memory; longer ids (e.g. with a long `SystemName-`
/// prefix) live on the heap. Looks up by `&str`.
#[derive(Clone)]
pub(crate) enum IdKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl IdKey {
    pub(crate) fn new(id: &str) -> Self {
        if id.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            IdKey::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            IdKey::Heap(id.into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // the bytes are a copy of a whole `&str`, so they are valid UTF-8
            IdKey::Inline { len, bytes } => {
                std::str::from_utf8(bytes.get(..usize::from(*len)).unwrap_or_default())
                    .unwrap_or_default()
            }
            IdKey::Heap(s) => s,
        }
    }
}

impl Borrow<str> for IdKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for IdKey {}

impl Hash for IdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::IdKey;
    use crate::hash::FxHashMap;

    #[test]
    fn round_trips_and_looks_up_by_str() {
        let ids = [
            "",
            "1795520552.4",
            "1795520552.75560",
            "1234567890123456789012",
            "12345678901234567890123",
            "pbx-london-01-1795520552.75560",
            "ünïcödé-1795520552.7",
        ];
        let mut map = FxHashMap::default();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(IdKey::new(id).as_str(), *id);
            map.insert(IdKey::new(id), i);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.get(*id), Some(&i));
        }
        assert_eq!(map.get("1795520552.7"), None);
        assert_eq!(std::mem::size_of::<IdKey>(), 24);
    }
}

//! Opaque cursors for every connection, with the Gateway's expiry: a walk's cursors die five
//! minutes (sim time) after the last use of any of them.

use std::ops::Range;

use jiff::SignedDuration;

use crate::state::State;

pub(crate) const CURSOR_TTL: SignedDuration = SignedDuration::from_secs(300);
pub(crate) const DEFAULT_PAGE: i32 = 20;
/// Obscures the cursor's structure so clients treat it as opaque.
const MASK: u64 = 0x5A17_C0DE_0BAD_F00D;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PageError {
    #[error("invalid cursor \"{0}\"")]
    Invalid(String),
    #[error(
        "cursor expired: more than 5 minutes since this collection was last paged; restart from the first page"
    )]
    Expired,
    #[error("first must not be negative")]
    NegativeFirst,
}

#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub range: Range<usize>,
    pub walk: u64,
    pub total: usize,
}

impl Window {
    pub(crate) fn cursor(&self, index: usize) -> String {
        encode(self.walk, index)
    }

    pub(crate) fn has_next(&self) -> bool {
        self.range.end < self.total
    }
}

fn encode(walk: u64, index: usize) -> String {
    let raw = ((walk & 0xFFFF_FFFF) << 32) | (index as u64 & 0xFFFF_FFFF);
    format!("{:016x}", raw ^ MASK)
}

fn decode(cursor: &str) -> Option<(u64, usize)> {
    if cursor.len() != 16 {
        return None;
    }
    let raw = u64::from_str_radix(cursor, 16).ok()? ^ MASK;
    Some((raw >> 32, (raw & 0xFFFF_FFFF) as usize))
}

impl State {
    /// The slice of a `total`-long collection a `first`/`after` request selects.
    pub(crate) fn page(
        &mut self,
        total: usize,
        first: Option<i32>,
        after: Option<&str>,
    ) -> Result<Window, PageError> {
        let now = self.synced_at;
        self.walks
            .retain(|_, last| now.duration_since(*last) <= CURSOR_TTL);
        let first = first.unwrap_or(DEFAULT_PAGE);
        if first < 0 {
            return Err(PageError::NegativeFirst);
        }
        let (walk, start) = match after {
            None => {
                let w = self.next_walk;
                self.next_walk += 1;
                (w, 0)
            }
            Some(c) => {
                let (w, i) = decode(c).ok_or_else(|| PageError::Invalid(c.to_string()))?;
                // Pruned above when stale, so an unknown walk is an expired one.
                if !self.walks.contains_key(&w) {
                    return Err(PageError::Expired);
                }
                (w, i + 1)
            }
        };
        self.walks.insert(walk, now);
        let start = start.min(total);
        let end = start.saturating_add(first as usize).min(total);
        Ok(Window {
            range: start..end,
            walk,
            total,
        })
    }
}

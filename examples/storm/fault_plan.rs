//! What each injected fault must become: the refusals a group of faults must produce, and the
//! handling the summary names for each kind.

use scoped_cache::testing::FaultKind;
use scoped_cache::{FreshnessKind, ViolationKind};

/// Faults grouped with the refusals they must produce: violations (reported), or freshness
/// misses (counted only).
pub struct Group {
    pub name: &'static str,
    pub faults: &'static [FaultKind],
    pub violations: &'static [ViolationKind],
    pub freshness: &'static [FreshnessKind],
}

pub const GROUPS: [Group; 3] = [
    Group {
        name: "another key's value (swap, confuse)",
        faults: &[FaultKind::Swap, FaultKind::Confuse],
        violations: &[
            ViolationKind::OwnerMismatch,
            ViolationKind::ItemMismatch,
            ViolationKind::NamespaceMismatch,
        ],
        freshness: &[],
    },
    Group {
        name: "damaged bytes (corrupt, truncate)",
        faults: &[FaultKind::Corrupt, FaultKind::Truncate],
        violations: &[
            ViolationKind::Malformed,
            ViolationKind::BadTag,
            ViolationKind::Undecodable,
        ],
        // A flipped key id names a key this ring lacks: unverifiable, refused unreported.
        freshness: &[FreshnessKind::UnknownKey],
    },
    Group {
        name: "expired value (stale)",
        faults: &[FaultKind::Stale],
        violations: &[],
        freshness: &[FreshnessKind::Expired],
    },
];

/// What a fault kind should have become, for the summary.
pub fn handled_as(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Swap | FaultKind::Confuse => "refused: owner or item mismatch",
        FaultKind::Corrupt | FaultKind::Truncate => "refused: malformed or bad tag",
        FaultKind::Stale => "refused: expired (a freshness miss, not reported)",
        FaultKind::Replay => "accepted: the owner's own, unexpired value",
        FaultKind::Drop | FaultKind::Timeout => "remote error: read as a miss",
        FaultKind::Delay => "answered late",
        _ => "",
    }
}

//! What each injected fault must become: the violations a group of faults must produce, and the
//! handling the summary names for each kind.

use scoped_cache::ViolationKind;
use scoped_cache::testing::FaultKind;

/// Faults grouped with the violations they must produce.
pub struct Group {
    pub name: &'static str,
    pub faults: &'static [FaultKind],
    pub violations: &'static [ViolationKind],
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
    },
    Group {
        name: "damaged bytes (corrupt, truncate)",
        faults: &[FaultKind::Corrupt, FaultKind::Truncate],
        violations: &[
            ViolationKind::Malformed,
            ViolationKind::BadTag,
            ViolationKind::UnknownKey,
            ViolationKind::SchemaMismatch,
            ViolationKind::Undecodable,
        ],
    },
    Group {
        name: "expired value (stale)",
        faults: &[FaultKind::Stale],
        violations: &[ViolationKind::Expired],
    },
];

/// What a fault kind should have become, for the summary.
pub fn handled_as(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Swap | FaultKind::Confuse => "refused: owner or item mismatch",
        FaultKind::Corrupt | FaultKind::Truncate => "refused: malformed or bad tag",
        FaultKind::Stale => "refused: expired",
        FaultKind::Replay => "accepted: the owner's own, unexpired value",
        FaultKind::Drop | FaultKind::Timeout => "remote error: read as a miss",
        FaultKind::Delay => "answered late",
        _ => "",
    }
}

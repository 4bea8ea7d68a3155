//! `tracing` output (feature `tracing`): a `DEBUG` span per `Cache` operation, an `ERROR` event
//! per refused value. Target `scoped_cache`.

use super::{OpKind, tier_name};
use crate::violation::{Tier, ViolationKind};
use tracing::field::Empty;

/// The span of one operation: fields `namespace` and `outcome` (recorded when it ends).
pub(super) fn operation(namespace: &'static str, kind: OpKind) -> tracing::Span {
    match kind {
        OpKind::Get => {
            tracing::debug_span!(target: "scoped_cache", "get", namespace, outcome = Empty)
        }
        OpKind::GetMany => {
            tracing::debug_span!(target: "scoped_cache", "get_many", namespace, outcome = Empty)
        }
        OpKind::Insert => {
            tracing::debug_span!(target: "scoped_cache", "insert", namespace, outcome = Empty)
        }
        OpKind::Invalidate => {
            tracing::debug_span!(target: "scoped_cache", "invalidate", namespace, outcome = Empty)
        }
        OpKind::GetOrLoad => {
            tracing::debug_span!(target: "scoped_cache", "get_or_load", namespace, outcome = Empty)
        }
        OpKind::GetOrRefresh => tracing::debug_span!(
            target: "scoped_cache",
            "get_or_refresh",
            namespace,
            outcome = Empty
        ),
    }
}

/// The event of one refused value: kind, tier and namespace, never the owners.
pub(super) fn violation(namespace: &'static str, tier: Tier, kind: ViolationKind) {
    tracing::error!(
        target: "scoped_cache",
        namespace,
        tier = tier_name(tier),
        kind = kind.name(),
        "refused a cached value; it was deleted and read as a miss",
    );
}

//! Which status fields the validating endpoint reads, declared once. The HTTP shell builds only
//! these when it parses a review for /validate, `review::validate` reads only these, and its
//! match condition (`match_conditions::validate_match_condition`, and the chart's copy of it,
//! which the chart tests compare) skips only writes that leave them as stored. A check that
//! reads another field adds it here, and each of those follows.

use crate::config::Config;

/// The fields /validate reads, by what it checks in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidateReads<'c> {
    /// The phase: a string, moved only as the table and the writer allow.
    pub phase: &'c str,
    /// The block clearance: attributed and explained.
    pub clearance: &'c str,
}

impl<'c> ValidateReads<'c> {
    pub fn of(config: &'c Config) -> Self {
        Self {
            phase: &config.phase.field,
            clearance: &config.block_clearance.field,
        }
    }

    /// The names, for a parser that builds only these.
    pub fn fields(&self) -> [&'c str; 2] {
        [self.phase, self.clearance]
    }
}

//! What replay says: one record per status write, and the summary line.

use serde::Serialize;

/// One status write: who wrote what, what the API server recorded, what the policy says.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub time: String,
    pub object: String,
    pub user: String,
    pub writer: String,
    pub verb: String,
    pub dry_run: bool,
    /// The phase move the write asked for.
    #[serde(rename = "move", skip_serializing_if = "Option::is_none")]
    pub phase_move: Option<String>,
    pub recorded: &'static str,
    pub replayed: &'static str,
    pub reason: String,
    /// The top-level status fields the write changes; for a difference, the fields it is in.
    pub fields: Vec<String>,
    /// `None` when the write could not be judged (the reason says why).
    pub agrees: Option<bool>,
    pub audit_id: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub records: Vec<Record>,
}

impl Report {
    pub fn agree(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.agrees == Some(true))
            .count()
    }

    pub fn differ(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.agrees == Some(false))
            .count()
    }

    /// `replay: N writes, A agree, D differ` (and how many could not be judged).
    pub fn summary(&self) -> String {
        let (n, a, d) = (self.records.len(), self.agree(), self.differ());
        let rest = n - a - d;
        let tail = if rest > 0 {
            format!(", {rest} not judged")
        } else {
            String::new()
        };
        format!("replay: {n} writes, {a} agree, {d} differ{tail}")
    }
}

//! Writer identities: which configured writers a request's user info matches.

use crate::config::WriterMatch;

/// A set of writers, one bit per configured writer (at most 64, checked by config validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Writers(u64);

impl Writers {
    pub const NONE: Writers = Writers(0);

    pub fn with(self, index: usize) -> Writers {
        Writers(self.0 | (1 << index))
    }

    pub fn intersects(self, other: Writers) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn indices(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |i| self.0 & (1 << i) != 0)
    }
}

/// A user pattern: `*` matches any run of characters inside one `:`-separated segment, so
/// `system:serviceaccount:*:name` matches a service account of that name in any namespace and
/// nothing else.
#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<String>,
}

impl Pattern {
    fn new(text: &str) -> Self {
        Self {
            segments: text.split(':').map(str::to_string).collect(),
        }
    }

    fn matches(&self, user: &str) -> bool {
        let mut parts = user.split(':');
        for seg in &self.segments {
            match parts.next() {
                Some(part) if glob(seg, part) => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

/// Glob with `*` only, iterative with single backtrack point (linear in practice).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[derive(Debug, Clone)]
struct CompiledWriter {
    name: String,
    users: Vec<Pattern>,
    groups: Vec<String>,
    any_other_user: bool,
}

/// The configured writers, compiled for matching.
#[derive(Debug, Clone)]
pub struct WriterTable {
    writers: Vec<CompiledWriter>,
}

/// Users the API server gives to requests nobody authenticated.
const ANONYMOUS: &str = "system:anonymous";

impl WriterTable {
    pub fn new<'a>(writers: impl IntoIterator<Item = (&'a String, &'a WriterMatch)>) -> Self {
        Self {
            writers: writers
                .into_iter()
                .map(|(name, m)| CompiledWriter {
                    name: name.clone(),
                    users: m.users.iter().map(|u| Pattern::new(u)).collect(),
                    groups: m.groups.clone(),
                    any_other_user: m.any_other_user,
                })
                .collect(),
        }
    }

    /// The index of a writer by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.writers.iter().position(|w| w.name == name)
    }

    /// Writers named in `names`; unknown names were rejected by config validation.
    pub fn set(&self, names: &[String]) -> Writers {
        names
            .iter()
            .filter_map(|n| self.index(n))
            .fold(Writers::NONE, Writers::with)
    }

    /// Every writer the user matches. `anyOtherUser` writers match only when no explicit one did.
    pub fn identify(&self, user: &str, groups: &[String]) -> Writers {
        let explicit = self
            .writers
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                w.users.iter().any(|p| p.matches(user))
                    || w.groups.iter().any(|g| groups.contains(g))
            })
            .fold(Writers::NONE, |acc, (i, _)| acc.with(i));
        if !explicit.is_empty() || user.is_empty() || user == ANONYMOUS {
            return explicit;
        }
        self.writers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.any_other_user)
            .fold(Writers::NONE, |acc, (i, _)| acc.with(i))
    }

    /// Human names of a set, e.g. `controller, webhook`.
    pub fn names(&self, set: Writers) -> String {
        let names: Vec<&str> = set
            .indices()
            .filter_map(|i| self.writers.get(i).map(|w| w.name.as_str()))
            .collect();
        if names.is_empty() {
            "no writer".into()
        } else {
            names.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn table() -> WriterTable {
        WriterTable::new(Config::default().writers.iter())
    }

    #[test]
    fn glob_matches_within_segment() {
        assert!(glob("*", "anything"));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("*@example.com", "alice@example.com"));
        assert!(!glob("a*c", "abd"));
        assert!(glob("", ""));
        assert!(!glob("", "x"));
    }

    #[test]
    fn wildcard_does_not_cross_segments() {
        let p = Pattern::new("system:serviceaccount:*:workflowexecution-controller");
        assert!(p.matches("system:serviceaccount:kubernaut:workflowexecution-controller"));
        assert!(!p.matches("system:serviceaccount:a:b:workflowexecution-controller"));
        assert!(!p.matches("system:serviceaccount:kubernaut:other"));
        assert!(!p.matches("workflowexecution-controller"));
    }

    #[test]
    fn default_controller_is_also_executor() {
        let t = table();
        let w = t.identify(
            "system:serviceaccount:kubernaut-system:workflowexecution-controller",
            &[],
        );
        assert_eq!(t.names(w), "controller, executor");
    }

    #[test]
    fn other_users_are_operators_but_anonymous_is_nobody() {
        let t = table();
        assert_eq!(t.names(t.identify("alice@example.com", &[])), "operator");
        assert!(t.identify("", &[]).is_empty());
        assert!(t.identify(ANONYMOUS, &[]).is_empty());
    }

    #[test]
    fn groups_match() {
        let mut config = Config::default();
        config
            .writers
            .get_mut("executor")
            .expect("executor")
            .groups
            .push("executors".into());
        let t = WriterTable::new(config.writers.iter());
        assert_eq!(
            t.names(t.identify("bob", &["executors".into()])),
            "executor"
        );
    }
}

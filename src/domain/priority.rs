//! A message's priority, which is also the name of the lane (work queue) it is delivered from:
//! `high` for one-time codes and security mail, `normal` (the default), `bulk` for receipts
//! and newsletters. The service may move a message to a lower lane than asked (fair share,
//! see `lanes`); never to a higher one.

use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Bulk,
}

impl Priority {
    /// Highest first: the order lanes are served and demoted in.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Bulk => "bulk",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The next lower lane; `bulk` is the floor.
    pub fn lower(self) -> Option<Priority> {
        match self {
            Priority::High => Some(Priority::Normal),
            Priority::Normal => Some(Priority::Bulk),
            Priority::Bulk => None,
        }
    }

    /// Position in [`Priority::ALL`] (0 = high).
    pub fn index(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Bulk => 2,
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_lowercase_on_the_wire_and_default_to_normal() {
        assert_eq!(Priority::default(), Priority::Normal);
        for p in Priority::ALL {
            let json = serde_json::to_string(&p).expect("json");
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(Priority::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::from_str::<Priority>(&json).ok(), Some(p));
        }
        assert!(serde_json::from_str::<Priority>("\"urgent\"").is_err());
        assert!(serde_json::from_str::<Priority>("\"HIGH\"").is_err());
    }

    #[test]
    fn lanes_step_down_to_bulk_and_stop() {
        assert_eq!(Priority::High.lower(), Some(Priority::Normal));
        assert_eq!(Priority::Normal.lower(), Some(Priority::Bulk));
        assert_eq!(Priority::Bulk.lower(), None);
        assert!(Priority::High < Priority::Normal && Priority::Normal < Priority::Bulk);
    }
}

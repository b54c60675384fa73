//! Quorum arithmetic, in one place: who may vote on a site, what an absolute majority is,
//! and whether a count can still reach it. Majorities are of the whole electorate, never of
//! those who happened to answer.

use super::types::NodeId;
use std::collections::BTreeSet;

/// The Voters allowed to judge one site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Electorate {
    members: BTreeSet<NodeId>,
}

impl Electorate {
    pub fn new(members: impl IntoIterator<Item = NodeId>) -> Electorate {
        Electorate {
            members: members.into_iter().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, node: &NodeId) -> bool {
        self.members.contains(node)
    }

    pub fn members(&self) -> impl Iterator<Item = &NodeId> {
        self.members.iter()
    }

    /// Smallest count that is more than half of the electorate.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }
}

/// Where a count of votes stands against an electorate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// A majority of the electorate said yes.
    Reached,
    /// Enough members said no that a majority of yes can no longer be reached.
    Impossible,
    /// Neither yet.
    Open,
}

/// Yes/no votes of distinct members; votes from non-members and repeated votes are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Count {
    yes: BTreeSet<NodeId>,
    no: BTreeSet<NodeId>,
}

impl Count {
    pub fn new() -> Count {
        Count::default()
    }

    /// Records `node`'s vote; a member's later vote replaces its earlier one.
    pub fn vote(&mut self, electorate: &Electorate, node: &NodeId, yes: bool) {
        if !electorate.contains(node) {
            return;
        }
        self.yes.remove(node);
        self.no.remove(node);
        if yes {
            self.yes.insert(node.clone());
        } else {
            self.no.insert(node.clone());
        }
    }

    pub fn yes(&self) -> usize {
        self.yes.len()
    }

    pub fn no(&self) -> usize {
        self.no.len()
    }

    pub fn standing(&self, electorate: &Electorate) -> Standing {
        let m = electorate.majority();
        if self.yes.len() >= m {
            Standing::Reached
        } else if electorate.len() - self.no.len().min(electorate.len()) < m {
            Standing::Impossible
        } else {
            Standing::Open
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(n: usize) -> Electorate {
        Electorate::new((0..n).map(|i| NodeId::from(format!("v{i}"))))
    }
    fn v(i: usize) -> NodeId {
        NodeId::from(format!("v{i}"))
    }

    #[test]
    fn majority_is_more_than_half_of_the_whole_electorate() {
        let expected = [
            (1, 1),
            (2, 2),
            (3, 2),
            (4, 3),
            (5, 3),
            (6, 4),
            (7, 4),
            (100, 51),
        ];
        for (n, m) in expected {
            assert_eq!(el(n).majority(), m, "electorate of {n}");
        }
    }

    #[test]
    fn every_count_of_every_small_electorate_has_the_right_standing() {
        for n in 1..=9 {
            let e = el(n);
            for yes in 0..=n {
                for no in 0..=(n - yes) {
                    let mut c = Count::new();
                    (0..yes).for_each(|i| c.vote(&e, &v(i), true));
                    (yes..yes + no).for_each(|i| c.vote(&e, &v(i), false));
                    let expected = if 2 * yes > n {
                        Standing::Reached
                    } else if 2 * (n - no) <= n {
                        Standing::Impossible
                    } else {
                        Standing::Open
                    };
                    assert_eq!(c.standing(&e), expected, "n={n} yes={yes} no={no}");
                }
            }
        }
    }

    #[test]
    fn a_tie_in_an_even_electorate_is_not_a_majority_and_cannot_become_one() {
        let e = el(4);
        let mut c = Count::new();
        c.vote(&e, &v(0), true);
        c.vote(&e, &v(1), true);
        assert_eq!(c.standing(&e), Standing::Open);
        c.vote(&e, &v(2), false);
        c.vote(&e, &v(3), false);
        assert_eq!(c.standing(&e), Standing::Impossible);
    }

    #[test]
    fn repeated_votes_and_strangers_do_not_count() {
        let e = el(3);
        let mut c = Count::new();
        c.vote(&e, &v(0), true);
        c.vote(&e, &v(0), true);
        c.vote(&e, &NodeId::from("stranger"), true);
        assert_eq!(c.yes(), 1);
        assert_eq!(c.standing(&e), Standing::Open);
    }

    #[test]
    fn a_changed_vote_replaces_the_earlier_one() {
        let e = el(3);
        let mut c = Count::new();
        c.vote(&e, &v(0), false);
        c.vote(&e, &v(0), true);
        assert_eq!((c.yes(), c.no()), (1, 0));
    }
}

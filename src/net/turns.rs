//! Turns for TLS handshakes: how many a node has in progress at once, of those it dials and of
//! those it accepts (apart, so that its own dials never keep it from accepting its peers', nor
//! the reverse), and how many of its dial turns peers that did not answer their last dial may
//! take.
//!
//! A dial to a peer that is gone holds its turn for the whole handshake timeout. When a site
//! goes dark its nodes become such peers all at once, and every survivor keeps dialing them;
//! without a share of their own they would take every turn, wave after wave, and a peer that
//! does answer (one restarting, or a connection between survivors that broke) would wait for
//! a turn behind them, one handshake timeout per `MAX_CONCURRENT_HANDSHAKES` dark peers. So
//! such "suspect" dials may hold at most half the turns; the other half stays for peers not
//! known to be silent.

use tokio::sync::{Semaphore, SemaphorePermit};

/// One node's handshake turns.
pub(super) struct HandshakeTurns {
    dials: Semaphore,
    /// Taken, before a dial turn, by a dial to a peer that did not answer its last dial.
    suspect_dials: Semaphore,
    accepts: Semaphore,
}

/// A dial's turn: the handshake may start; dropping it ends the turn.
pub(super) struct DialTurn<'a> {
    _suspect: Option<SemaphorePermit<'a>>,
    _turn: Option<SemaphorePermit<'a>>,
}

impl HandshakeTurns {
    /// `per_direction` handshakes at once each way, half of the dials for suspect peers.
    pub fn new(per_direction: usize) -> HandshakeTurns {
        HandshakeTurns {
            dials: Semaphore::new(per_direction),
            suspect_dials: Semaphore::new((per_direction / 2).max(1)),
            accepts: Semaphore::new(per_direction),
        }
    }

    /// Waits for a turn to dial; `suspect`: the peer did not answer its last dial.
    pub async fn dial(&self, suspect: bool) -> DialTurn<'_> {
        // The semaphores are never closed: a `None` would only let the dial go ahead.
        let suspect = if suspect {
            self.suspect_dials.acquire().await.ok()
        } else {
            None
        };
        DialTurn {
            _suspect: suspect,
            _turn: self.dials.acquire().await.ok(),
        }
    }

    /// Waits for a turn to answer a caller's handshake.
    pub async fn accept(&self) -> Option<SemaphorePermit<'_>> {
        self.accepts.acquire().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn gets_turn<F: std::future::Future>(f: F) -> Option<F::Output> {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .ok()
    }

    async fn fresh_turns(turns: &HandshakeTurns) -> Vec<DialTurn<'_>> {
        let mut got = Vec::new();
        while let Some(t) = gets_turn(turns.dial(false)).await {
            got.push(t);
        }
        got
    }

    #[tokio::test]
    async fn dials_to_silent_peers_leave_half_the_turns_to_the_others() {
        let turns = HandshakeTurns::new(8);
        let mut suspects = Vec::new();
        while let Some(t) = gets_turn(turns.dial(true)).await {
            suspects.push(t);
        }
        assert_eq!(
            suspects.len(),
            4,
            "suspect dials hold at most half the turns"
        );
        let fresh = fresh_turns(&turns).await;
        assert_eq!(fresh.len(), 4, "the other half stays for other peers");
        // Every turn held: the next dial waits until one ends.
        assert!(gets_turn(turns.dial(false)).await.is_none());
        drop(suspects.pop());
        assert!(gets_turn(turns.dial(false)).await.is_some());
    }

    #[tokio::test]
    async fn a_suspect_turn_ends_with_its_dial() {
        let turns = HandshakeTurns::new(2);
        let first = gets_turn(turns.dial(true)).await.expect("turn");
        assert!(gets_turn(turns.dial(true)).await.is_none());
        drop(first);
        assert!(gets_turn(turns.dial(true)).await.is_some());
        // Accepting has turns of its own, whatever the dials hold.
        let _dials: Vec<_> = fresh_turns(&turns).await;
        assert!(gets_turn(turns.accept()).await.flatten().is_some());
    }
}

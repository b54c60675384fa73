//! Operator commands from the REST API on their way to the core: the REST handlers send a
//! `Command` over a channel and wait for its reply; the loop hands it to the core under an id
//! and answers when the core's `Reply` for that id comes out. Nothing here decides.

use crate::core::node::{Command as CommandKind, CommandReply};
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot};

/// One operator command and where its reply goes.
#[derive(Debug)]
pub struct Command {
    pub kind: CommandKind,
    pub reply: oneshot::Sender<CommandReply>,
}

/// How many commands may wait for the driver loop.
const QUEUE: usize = 64;

/// The loop's side of the command channel, and the answers it owes.
pub(super) struct Commands {
    pub rx: mpsc::Receiver<Command>,
    /// Kept so that the channel stays open on a node without REST listener.
    tx: mpsc::Sender<Command>,
    owed: BTreeMap<u64, oneshot::Sender<CommandReply>>,
    next_id: u64,
}

impl Commands {
    pub fn new() -> Commands {
        let (tx, rx) = mpsc::channel(QUEUE);
        Commands {
            rx,
            tx,
            owed: BTreeMap::new(),
            next_id: 0,
        }
    }

    /// Where the REST API sends its commands.
    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.tx.clone()
    }

    /// Keeps `reply` until the core answers; the id to hand the core with the command.
    pub fn waiting(&mut self, reply: oneshot::Sender<CommandReply>) -> u64 {
        self.next_id += 1;
        self.owed.insert(self.next_id, reply);
        self.next_id
    }

    pub fn answer(&mut self, id: u64, reply: CommandReply) {
        if let Some(tx) = self.owed.remove(&id) {
            // The caller may have given up waiting; nothing is lost but the answer.
            let _ = tx.send(reply);
        }
    }
}

//! The fault model applied to the world's nodes: crashes (memory and backlog lost), freezes
//! (a stopped process whose socket keeps what arrives), restarts from the store and resumes.

use super::*;

impl World {
    /// Crashes node `i` (dynamic faults use this too).
    pub(in crate::sim) fn crash_now(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.up = false;
        n.frozen = false;
        n.timer_at = None;
        n.core = None;
        n.backlog.clear();
        n.down_since = Some(now);
        for (id, end) in self.actuator.orphan(i, now) {
            self.q.push(end, EventKind::StepEnd { attempt: id });
        }
    }

    /// Brings every node to the state the fault model gives it now.
    pub fn apply_faults(&mut self) -> Check {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let (id, site) = (self.nodes[i].id.clone(), self.nodes[i].site.clone());
            let blackout = self
                .faults
                .blackouts
                .iter()
                .any(|b| b.site == site && b.start <= now && b.end.is_none_or(|e| now < e));
            let outage = self
                .faults
                .outages
                .iter()
                .find(|o| o.node == id && o.start <= now && now < o.end);
            let crash = blackout || outage.is_some_and(|o| o.crash);
            let want_up = !blackout && outage.is_none();
            let n = &mut self.nodes[i];
            if n.up && !want_up {
                if crash {
                    self.crash_now(i);
                } else {
                    let n = &mut self.nodes[i];
                    n.up = false;
                    n.timer_at = None;
                    n.frozen = true;
                    n.backlog.clear();
                }
                let how = if crash { "crashes" } else { "freezes" };
                self.log(|| format!("{id} {how}"));
            } else if !n.up && crash && n.frozen {
                // A frozen node that crashes loses its memory and its backlog.
                self.crash_now(i);
            } else if !n.up && want_up {
                n.up = true;
                if !n.frozen {
                    self.counters.restarts += 1;
                    self.log(|| format!("{id} restarts from its store"));
                    self.boot(i)?;
                } else {
                    self.nodes[i].frozen = false;
                    self.log(|| format!("{id} resumes with a backlog"));
                    let backlog = std::mem::take(&mut self.nodes[i].backlog);
                    // Overdue timers first, as a process resuming would find them expired.
                    let inc = self.nodes[i].incarnation;
                    self.nodes[i].timer_at = Some(now);
                    self.on_timer(i, inc)?;
                    for p in backlog {
                        match p {
                            Pending::Bytes {
                                from,
                                datagram,
                                bytes,
                            } => self.on_deliver(i, from, datagram, bytes)?,
                            Pending::Step(done) => self.feed(i, Input::StepDone(done))?,
                        }
                    }
                    self.arm(i)?;
                }
            }
        }
        Ok(())
    }
}

//! What cluster mode needs of the chat beside its actions: numbering a
//! line with its stream entry's sequence number, the state a snapshot
//! keeps (clients with their rooms, the mark left by evicted rooms), and
//! starting a new epoch when Redis lost its data. Every node applies the
//! same entries to the same code, so these keep every replica equal.

use super::*;

/// A client as a cluster snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptClient {
    pub id: ClientId,
    pub mode: Mode,
    pub nick: String,
    /// The rooms it is in, in the order it entered them.
    pub rooms: Vec<RoomName>,
}

impl Chat {
    /// Numbers the next chat line `seq`. Cluster mode calls it before
    /// applying each text entry, so that a message's id is its entry's
    /// cluster-wide sequence number on every node.
    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// The protocol client `id` speaks, if connected.
    pub fn mode(&self, id: ClientId) -> Option<Mode> {
        self.clients.get(&id).map(|c| c.mode)
    }

    /// Every connected client's id (in no particular order).
    pub fn client_ids(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.clients.keys().copied()
    }

    /// Every client with its nickname and rooms, by id.
    pub fn kept_clients(&self) -> Vec<KeptClient> {
        let mut kept: Vec<KeptClient> = self
            .clients
            .iter()
            .map(|(id, c)| KeptClient {
                id: *id,
                mode: c.mode,
                nick: c.nick.clone(),
                rooms: c.rooms.iter().map(|r| self.room(*r).name.clone()).collect(),
            })
            .collect();
        kept.sort_unstable_by_key(|c| c.id);
        kept
    }

    /// Puts a client back without announcing it (loading a snapshot), in
    /// those of its rooms that exist. False if its id or nickname is taken.
    pub fn restore_client(&mut self, kept: KeptClient) -> bool {
        let key = nick_key(&kept.nick);
        let guest = kept.nick == guest_nick(kept.id);
        if self.clients.contains_key(&kept.id) || (!guest && self.nicks.contains_key(&key)) {
            return false;
        }
        if !guest {
            self.nicks.insert(key, kept.id);
        }
        let mut rooms = Vec::new();
        for name in &kept.rooms {
            let Some(room) = self.room_id(name) else {
                continue;
            };
            let chat_room = self.room_mut(room);
            if !chat_room.members.insert(kept.id) {
                continue;
            }
            if let Some(since) = chat_room.idle_since.take() {
                self.idle.remove(&(since, room));
            }
            rooms.push(room);
        }
        let client = Client {
            nick: kept.nick,
            mode: kept.mode,
            rooms,
            // A snapshot does not keep who a client is: restored, it is
            // a guest of unknown address.
            exp: None,
            user: None,
            address: None,
        };
        self.clients.insert(kept.id, client);
        self.main_tail = None;
        true
    }

    /// The newest id an evicted room had (see [`Chat::is_gap`]).
    pub fn evicted_through(&self) -> u64 {
        self.evicted_through
    }

    /// Restores that mark (loading a snapshot).
    pub fn set_evicted_through(&mut self, through: u64) {
        self.evicted_through = self.evicted_through.max(through);
    }

    /// The histories were lost (cluster mode: Redis lost its data): every
    /// room forgets its kept messages and what follows is `epoch`. Rooms,
    /// topics and members stay; ids are the caller's to restart.
    pub fn start_epoch(&mut self, epoch: Epoch) {
        for room in self.rooms.iter_mut().flatten() {
            room.history = History::new(self.limits.history);
        }
        self.history_bytes = 0;
        self.evicted_through = 0;
        self.main_tail = None;
        self.epoch = epoch;
    }
}

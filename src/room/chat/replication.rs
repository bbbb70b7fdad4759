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
    /// Its address, if known (what an address ban names).
    pub address: Option<IpAddr>,
    /// The signed-in user it belongs to (its `sub`), and when its token
    /// expires.
    pub user: Option<(String, i64)>,
}

/// A room's operator (its creator, until it is empty) as a cluster
/// snapshot keeps it: a signed-in user, or a guest's one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptOperator {
    User(String),
    Guest(ClientId),
}

/// A signed-in user as a cluster snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptUser {
    pub sub: String,
    /// Its first connection's id: its `id` in events.
    pub id: ClientId,
    pub nick: String,
    /// Its token says `"role":"op"`.
    pub op: bool,
    /// The private rooms its token lists.
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
                address: c.address,
                user: c
                    .user
                    .as_ref()
                    .zip(c.exp)
                    .map(|(sub, exp)| (sub.to_string(), exp)),
            })
            .collect();
        kept.sort_unstable_by_key(|c| c.id);
        kept
    }

    /// Every signed-in user, by `sub`.
    pub fn kept_users(&self) -> Vec<KeptUser> {
        let mut kept: Vec<KeptUser> = self
            .users
            .iter()
            .map(|(sub, user)| KeptUser {
                sub: sub.to_string(),
                id: user.id,
                nick: user.nick.clone(),
                op: user.op,
                rooms: user.rooms.iter().cloned().collect(),
            })
            .collect();
        kept.sort_unstable_by(|a, b| a.sub.cmp(&b.sub));
        kept
    }

    /// Puts a signed-in user back (loading a snapshot), before its
    /// connections ([`Chat::restore_client`]); one without any is let go.
    pub fn restore_user(&mut self, kept: KeptUser) {
        let user = User {
            id: kept.id,
            nick: kept.nick,
            op: kept.op,
            rooms: kept.rooms.into_iter().collect(),
            connections: BTreeSet::new(),
        };
        self.users.insert(kept.sub.as_str().into(), user);
    }

    /// Every room that has a room operator, with it, by room name.
    pub fn room_operators(&self) -> Vec<(RoomName, KeptOperator)> {
        self.by_name
            .iter()
            .filter_map(|(name, id)| {
                let operator = match self.room(*id).operator.as_ref()? {
                    Principal::User(sub) => KeptOperator::User(sub.to_string()),
                    Principal::Guest(id) => KeptOperator::Guest(*id),
                };
                Some((name.clone(), operator))
            })
            .collect()
    }

    /// Gives the room `name` back its operator (loading a snapshot, after
    /// its members); ignored for a room that does not exist.
    pub fn restore_room_operator(&mut self, name: &RoomName, operator: KeptOperator) {
        let Some(id) = self.room_id(name) else {
            return;
        };
        self.room_mut(id).operator = Some(match operator {
            KeptOperator::User(sub) => Principal::User(sub.as_str().into()),
            KeptOperator::Guest(id) => Principal::Guest(id),
        });
    }

    /// Lets go of the restored users none of whose connections came back.
    pub fn drop_unconnected_users(&mut self) {
        self.users.retain(|_, user| !user.connections.is_empty());
    }

    /// The newest time the chat was told (ms since the epoch).
    pub fn latest_time(&self) -> u64 {
        self.now
    }

    /// Puts a client back without announcing it (loading a snapshot), in
    /// those of its rooms that exist, as a connection of its signed-in
    /// user (restored first). False if its id is taken, or its nickname
    /// by another than its user.
    pub fn restore_client(&mut self, kept: KeptClient) -> bool {
        let key = nick_key(&kept.nick);
        let guest = kept.nick == guest_nick(kept.id);
        let user: Option<Arc<str>> = kept
            .user
            .as_ref()
            .map(|(sub, _)| sub.as_str().into())
            .filter(|sub| self.users.contains_key(sub));
        let holder_is_mine = |chat: &Chat, holder: &ClientId| {
            user.is_some()
                && chat.clients.get(holder).and_then(|c| c.user.as_ref()) == user.as_ref()
        };
        let taken = self
            .nicks
            .get(&key)
            .is_some_and(|holder| !holder_is_mine(self, holder));
        if self.clients.contains_key(&kept.id) || (!guest && taken) {
            return false;
        }
        if !guest {
            self.nicks.entry(key).or_insert(kept.id);
        }
        if let Some(sub) = &user {
            let connections = &mut self.users.get_mut(sub).expect("restored").connections;
            connections.insert(kept.id);
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
            exp: user.as_ref().and(kept.user.as_ref()).map(|(_, exp)| *exp),
            user,
            address: kept.address,
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
    /// topics, members, sign-ins, bans, mutes and direct messages stay;
    /// ids are the caller's to restart.
    pub fn start_epoch(&mut self, epoch: Epoch) {
        for room in self.rooms.iter_mut().flatten() {
            room.history = History::new(self.limits.history);
        }
        // Direct messages carry no ids, so no epoch: they are kept, and
        // still count against the one budget.
        self.history_bytes = self.direct.values().map(History::bytes).sum();
        self.evicted_through = 0;
        self.main_tail = None;
        self.epoch = epoch;
    }
}

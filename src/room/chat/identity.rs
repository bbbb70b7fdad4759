//! Signed-in users: one user per `sub` however many connections, the
//! names they own, the private rooms their tokens name, and the direct
//! messages kept between two of them. Who someone is was decided at the
//! handshake (a verified token, see `crate::auth`); here it is only used.

use super::membership::reply;
use super::*;

/// What a verified token says about its holder, as the chat uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's id at the issuer (`sub`).
    pub sub: String,
    /// The name to show (`name`), if the token gave one.
    pub name: Option<String>,
    /// `"role":"op"`: an operator everywhere.
    pub op: bool,
    /// The private rooms the user may join (`rooms`).
    pub rooms: Vec<RoomName>,
    /// When the token expires (`exp`, seconds since the epoch).
    pub exp: i64,
}

impl Identity {
    /// What the chat uses of a verified token's claims. A `rooms` entry
    /// names a room with or without its `#` (`"ops"` is `#ops`); one
    /// that is not a valid room name (see [`RoomName`]) names no room and
    /// is left out.
    ///
    /// ```
    /// use wschat::auth::Claims;
    /// use wschat::room::Identity;
    /// let claims = Claims {
    ///     sub: "u-1".into(), exp: 2_000_000_000, name: Some("ann".into()), nbf: None,
    ///     iat: None, role: Some("op".into()), rooms: vec!["#ops".into(), "Staff".into(), "no spaces".into()],
    /// };
    /// let identity = Identity::from_claims(&claims);
    /// assert!(identity.op);
    /// let rooms: Vec<&str> = identity.rooms.iter().map(|r| r.as_str()).collect();
    /// assert_eq!(rooms, ["#ops", "#staff"]);
    /// ```
    pub fn from_claims(claims: &crate::auth::Claims) -> Identity {
        Identity {
            sub: claims.sub.clone(),
            name: claims.name.clone(),
            op: claims.is_operator(),
            rooms: claims
                .rooms
                .iter()
                .filter_map(|room| {
                    RoomName::parse(room).or_else(|| RoomName::parse(&format!("#{room}")))
                })
                .collect(),
            exp: claims.exp,
        }
    }
}

/// Who is connecting: signed in or a guest, and from which address (the
/// client's, after the trusted-proxy rules; what an address ban names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visitor {
    pub identity: Option<Identity>,
    pub address: Option<IpAddr>,
}

/// The highest suffix tried for a second user claiming a taken name
/// (`ann-2` ... `ann-99`); past it the user is called `user-ID`.
pub const MAX_NAME_SUFFIX: u32 = 99;

impl Chat {
    /// Signs connection `id` in as `identity`'s user. A second connection
    /// of a user takes its nickname; a first one takes its token's name,
    /// or `NAME-2` (`-3`, ...) if another user owns that name, and then
    /// the `name_claimed` text is returned. A guest holding the name is
    /// renamed `guest-N`.
    pub(super) fn sign_in(
        &mut self,
        id: ClientId,
        identity: Identity,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Option<String> {
        for room in &identity.rooms {
            if self.private_rooms.insert(room.clone()) {
                out.push(Output::Record(private_record(room).into()));
            }
        }
        let sub: Arc<str> = identity.sub.as_str().into();
        let rooms: BTreeSet<RoomName> = identity.rooms.iter().cloned().collect();
        if let Some(user) = self.users.get_mut(&sub) {
            user.connections.insert(id);
            // The newest token says what the user may do now.
            user.op = identity.op;
            user.rooms = rooms;
            let nick = user.nick.clone();
            let client = self.clients.get_mut(&id).expect("connected");
            client.nick = nick;
            client.user = Some(sub);
            client.exp = Some(identity.exp);
            return None;
        }
        let wanted = token_nick(&identity, id);
        let nick = self.free_name(&wanted, &sub, id);
        let key = nick_key(&nick);
        if let Some(holder) = self.nicks.get(&key).copied()
            && holder != id
        {
            self.rename_to_guest(holder, now, out);
        }
        self.nicks.insert(key.clone(), id);
        if self.owners.get(&key) != Some(&sub) {
            self.owners.insert(key, sub.clone());
            out.push(Output::Record(owner_record(&nick, &sub).into()));
        }
        log::info!("({id}) signed in as {}", nick.escape_debug());
        self.users.insert(
            sub.clone(),
            User {
                id,
                nick: nick.clone(),
                op: identity.op,
                rooms,
                connections: BTreeSet::from([id]),
            },
        );
        let client = self.clients.get_mut(&id).expect("connected");
        client.nick = nick.clone();
        client.user = Some(sub);
        client.exp = Some(identity.exp);
        (nick != wanted)
            .then(|| format!("{wanted} belongs to another signed-in user; you are {nick}"))
    }

    /// `wanted`, or `wanted-2`, `-3`, ...: the first that no other user
    /// owns and no other signed-in connection holds.
    fn free_name(&self, wanted: &str, sub: &Arc<str>, id: ClientId) -> String {
        let free = |name: &str| {
            let key = nick_key(name);
            let owned = self.owners.get(&key).is_some_and(|owner| owner != sub);
            let held = self
                .nicks
                .get(&key)
                .is_some_and(|holder| self.clients[holder].user.is_some());
            !owned && !held
        };
        if free(wanted) {
            return wanted.to_string();
        }
        for n in 2..=MAX_NAME_SUFFIX {
            let suffix = format!("-{n}");
            let room = MAX_NICK_CHARS - suffix.len();
            let stem: String = wanted.chars().take(room).collect();
            let candidate = stem + &suffix;
            if free(&candidate) {
                return candidate;
            }
        }
        format!("user-{id}")
    }

    /// A guest loses a name its owner signed in with: it is `guest-N`
    /// again, and every v1 client hears it.
    fn rename_to_guest(&mut self, holder: ClientId, now: u64, out: &mut Vec<Output>) {
        let Some(client) = self.clients.get_mut(&holder) else {
            return;
        };
        if client.user.is_some() {
            return;
        }
        let guest = guest_nick(holder);
        let old = std::mem::replace(&mut client.nick, guest.clone());
        self.nicks.remove(&nick_key(&old));
        self.main_tail = None;
        log::info!(
            "({holder}) is now known as {guest} (was {}): a signed-in user owns that name",
            old.escape_debug()
        );
        out.push(Output::Broadcast {
            mode: Mode::V1,
            payload: Payload::Text(nick_event(holder, &guest, &old, now).into()),
            except: None,
        });
    }

    /// Connection `id` of user `sub` is gone; `key` is its name's key.
    pub(super) fn sign_out(&mut self, id: ClientId, sub: &Arc<str>, key: &str) {
        let Some(user) = self.users.get_mut(sub) else {
            return;
        };
        user.connections.remove(&id);
        match user.connections.first() {
            None => {
                self.users.remove(sub);
            }
            Some(other) if !self.nicks.contains_key(key) => {
                self.nicks.insert(key.to_string(), *other);
            }
            Some(_) => {}
        }
    }

    /// Connection `id` refreshed its sign-in (`/auth`) with a token for
    /// the same user: its end moves on, and the newest token says what
    /// the user may do (operator or not, which private rooms it may join
    /// and see; rooms it is in already it stays in). A token for another
    /// user is ignored (the reader refuses it first).
    pub(super) fn refresh(&mut self, id: ClientId, identity: Identity, out: &mut Vec<Output>) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.user.as_deref() != Some(identity.sub.as_str()) {
            return;
        }
        client.exp = Some(identity.exp);
        for room in &identity.rooms {
            if self.private_rooms.insert(room.clone()) {
                out.push(Output::Record(private_record(room).into()));
            }
        }
        if let Some(user) = self.users.get_mut(identity.sub.as_str()) {
            user.op = identity.op;
            user.rooms = identity.rooms.into_iter().collect();
        }
    }

    /// Whether `name` is owned by a signed-in user other than `id`'s.
    pub(super) fn owned_by_other(&self, id: ClientId, name: &str) -> bool {
        let mine = self.clients.get(&id).and_then(|c| c.user.as_ref());
        self.owners
            .get(&nick_key(name))
            .is_some_and(|owner| Some(owner) != mine)
    }

    /// The signed-in members of a welcome (`"auth"` and `"direct"`), or
    /// nothing for a guest.
    pub(super) fn signed_in_welcome(&self, id: ClientId) -> String {
        let client = &self.clients[&id];
        let (Some(sub), Some(exp)) = (&client.user, client.exp) else {
            return String::new();
        };
        let mut out = format!(",\"auth\":{{\"exp\":{exp}}},\"direct\":[");
        let mut first = true;
        for ((a, b), history) in &self.direct {
            if a != sub && b != sub {
                continue;
            }
            for event in history.iter() {
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
                out.push_str(event);
            }
        }
        out.push(']');
        out
    }

    /// Whether client `id` may enter the room `name`: a private room only
    /// if its token lists it, and not while banned from it.
    pub(super) fn may_enter(&self, id: ClientId, name: &RoomName) -> Result<(), Refusal> {
        if !self.may_see(id, name) {
            let text = format!("{name} is private: your sign-in does not list it");
            return Err((ErrorCode::NotAllowed, text));
        }
        if let Some(ban) = self.sanction_on(SanctionKind::Ban, id, Some(name)) {
            return Err((ErrorCode::NotAllowed, ban.describe(name)));
        }
        Ok(())
    }

    /// Whether client `id` may see (in `/rooms`) and join the room `name`.
    pub(super) fn may_see(&self, id: ClientId, name: &RoomName) -> bool {
        if !self.private_rooms.contains(name) {
            return true;
        }
        self.signed_in_user(id)
            .is_some_and(|user| user.rooms.contains(name))
    }

    pub(super) fn signed_in_user(&self, id: ClientId) -> Option<&User> {
        let sub = self.clients.get(&id)?.user.as_ref()?;
        self.users.get(sub)
    }

    /// Every connection of `id`'s user (just `id` for a guest).
    pub(super) fn connections_of(&self, id: ClientId) -> Vec<ClientId> {
        match self.signed_in_user(id) {
            Some(user) => user.connections.iter().copied().collect(),
            None => vec![id],
        }
    }

    /// A direct message between two signed-in users is kept, the newest
    /// `--history` per pair, within the one history budget.
    pub(super) fn keep_direct(
        &mut self,
        from: ClientId,
        to: ClientId,
        event: &str,
        out: &mut Vec<Output>,
    ) {
        let (Some(a), Some(b)) = (
            self.clients[&from].user.clone(),
            self.clients[&to].user.clone(),
        ) else {
            return;
        };
        let pair = if a <= b { (a, b) } else { (b, a) };
        out.push(Output::Record(
            direct_record(&pair.0, &pair.1, event).into(),
        ));
        let limit = self.limits.history;
        let history = self
            .direct
            .entry(pair.clone())
            .or_insert_with(|| History::new(limit));
        let before = history.bytes();
        history.push(event.into());
        let mut after = history.bytes();
        // Within the budget all histories share: this pair's oldest go.
        while self.history_bytes + after - before > self.limits.room_history_bytes {
            if history.pop_oldest().is_none() {
                break;
            }
            after = history.bytes();
        }
        self.history_bytes = self.history_bytes + after - before;
    }

    /// Rooms and users a restart keeps: names owned, private rooms, the
    /// bans and mutes in force at `now`, direct-message histories.
    pub fn kept_identity(&self, now: u64) -> KeptIdentity {
        KeptIdentity {
            owners: self
                .owners
                .iter()
                .map(|(key, sub)| (key.clone(), sub.to_string()))
                .collect(),
            private_rooms: self.private_rooms.iter().cloned().collect(),
            sanctions: self
                .sanctions
                .iter()
                .filter(|s| s.in_force(now))
                .cloned()
                .collect(),
            direct: self
                .direct
                .iter()
                .map(|((a, b), h)| ((a.to_string(), b.to_string()), h.clone()))
                .collect(),
        }
    }

    /// Puts back what [`Chat::kept_identity`] kept (at start-up).
    pub fn restore_identity(&mut self, kept: KeptIdentity) {
        for (key, sub) in kept.owners {
            self.owners.insert(key, sub.as_str().into());
        }
        self.private_rooms.extend(kept.private_rooms);
        self.sanctions.extend(kept.sanctions);
        for ((a, b), kept_history) in kept.direct {
            let mut history = History::new(self.limits.history);
            for event in kept_history.events() {
                history.push(event.clone());
            }
            self.history_bytes += history.bytes();
            self.direct
                .insert((a.as_str().into(), b.as_str().into()), history);
        }
    }

    /// The reply to `/rooms` lists a private room only to its users.
    pub(super) fn visible_rooms(&self, id: ClientId) -> String {
        let rooms = self
            .by_name
            .iter()
            .filter(|(name, _)| self.may_see(id, name))
            .map(|(_, room)| {
                let room = self.room(*room);
                (&room.name, room.members.len(), room.topic.as_deref())
            });
        rooms_event(rooms)
    }

    /// `/nick` by a signed-in user: its name is its token's.
    pub(super) fn refuse_rename(&self, id: ClientId, out: &mut Vec<Output>) -> bool {
        if self.clients[&id].user.is_none() {
            return false;
        }
        let text = "a signed-in user is called by the name its sign-in gives";
        reply(
            out,
            id,
            super::super::error_event(ErrorCode::NotAllowed, text),
        );
        true
    }
}

/// What the history file keeps of identity and moderation.
#[derive(Debug, Clone, Default)]
pub struct KeptIdentity {
    /// `nick_key` of each owned name, to its owner's `sub`.
    pub owners: Vec<(String, String)>,
    pub private_rooms: Vec<RoomName>,
    pub sanctions: Vec<Sanction>,
    /// Direct-message histories by pair of `sub`s.
    pub direct: Vec<((String, String), History)>,
}

/// The nickname a token asks for: its `name`, else its `sub`, if either
/// is a valid nickname; else `user-ID`.
fn token_nick(identity: &Identity, id: ClientId) -> String {
    [identity.name.as_deref(), Some(identity.sub.as_str())]
        .into_iter()
        .flatten()
        .find(|name| validate_nick(name).is_ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("user-{id}"))
}

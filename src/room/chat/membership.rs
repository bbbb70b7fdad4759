//! Who is in which room: connecting, `/join`, `/part`, leaving, and the
//! rooms' life (creation, eviction of the empty room unused longest, the
//! one history budget).

use super::*;

impl Chat {
    /// A client connected, asking to be in `rooms` (in that order). A
    /// `wschat.v1` client gets a `welcome` (with `#main`'s users and
    /// history if it is in `#main`) then a `joined` per other room, and
    /// an error per room it could not enter; a raw client is in the first
    /// room only, and is refused if it cannot enter it.
    pub fn connect(
        &mut self,
        now: u64,
        id: ClientId,
        mode: Mode,
        resume: Option<Resume>,
        rooms: &[RoomName],
        out: &mut Vec<Output>,
    ) {
        self.connect_as(now, id, mode, resume, rooms, Visitor::default(), out)
    }

    /// [`Chat::connect`] for a client that may be signed in, from a known
    /// address. The broadcaster has checked [`Chat::admission`] first; a
    /// visitor a server-wide ban holds at `now` all the same is left out
    /// (in cluster mode, a ban ordered between that check and the join:
    /// every replica leaves it out alike, and its node answers 403).
    #[allow(clippy::too_many_arguments)]
    pub fn connect_as(
        &mut self,
        now: u64,
        id: ClientId,
        mode: Mode,
        resume: Option<Resume>,
        rooms: &[RoomName],
        visitor: Visitor,
        out: &mut Vec<Output>,
    ) {
        self.now = self.now.max(now);
        if self.clients.contains_key(&id) || self.admission(&visitor, now).is_err() {
            return;
        }
        let client = Client {
            nick: guest_nick(id),
            mode,
            rooms: Vec::new(),
            exp: None,
            user: None,
            address: visitor.address,
        };
        self.clients.insert(id, client);
        let claimed = visitor
            .identity
            .map(|identity| self.sign_in(id, identity, now, out));
        let nick = self.clients[&id].nick.clone();
        let wanted = match mode {
            Mode::Raw => &rooms[..rooms.len().min(1)],
            Mode::V1 => rooms,
        };
        let mut refused = Vec::new();
        for name in wanted {
            if let Err((code, text)) = self.enter(id, name, out) {
                refused.push((name, code, text));
            }
        }
        if mode == Mode::Raw {
            if let Some((_, code, _)) = refused.first() {
                out.push(Output::Refused {
                    to: id,
                    code: *code,
                });
            }
        } else {
            self.welcome(id, resume.as_ref(), out);
        }
        let entered = self.clients[&id].rooms.clone();
        for room in entered {
            self.announce_join(id, room, now, out);
        }
        for (name, code, text) in refused.into_iter().filter(|_| mode == Mode::V1) {
            reply(out, id, room_error_event(code, &text, name));
        }
        if let Some(Some(text)) = claimed.filter(|_| mode == Mode::V1) {
            reply_error(out, id, ErrorCode::NameClaimed, &text);
        }
        let _ = nick;
    }

    /// The room's other members hear that `id` joined, unless another
    /// connection of the same signed-in user is in it already.
    fn announce_join(&self, id: ClientId, room: RoomId, now: u64, out: &mut Vec<Output>) {
        if self.twin_in(id, room) {
            return;
        }
        let name = &self.room(room).name;
        let event = room_presence_event("join", name, self.user_ref(id), now);
        out.push(to_room(room, event, Some(id)));
    }

    /// Whether another connection of `id`'s signed-in user is in `room`.
    pub(super) fn twin_in(&self, id: ClientId, room: RoomId) -> bool {
        let Some(user) = self.clients[&id]
            .user
            .as_ref()
            .and_then(|s| self.users.get(s))
        else {
            return false;
        };
        let members = &self.room(room).members;
        user.connections
            .iter()
            .any(|c| *c != id && members.contains(c))
    }

    /// The `welcome`, then a `joined` for every room but `#main`.
    fn welcome(&mut self, id: ClientId, resume: Option<&Resume>, out: &mut Vec<Output>) {
        let rooms = self.clients[&id].rooms.clone();
        let in_main = rooms.contains(&MAIN);
        let names: Vec<RoomName> = rooms.iter().map(|r| self.room(*r).name.clone()).collect();
        let signed_in = self.signed_in_welcome(id);
        let head = chat_welcome_head(
            self.user_ref(id),
            &self.epoch,
            in_main.then(|| self.room(MAIN).topic.as_deref()),
            names.iter(),
            // `#main`'s members only if it is one of them.
            self.users(MAIN)
                .into_iter()
                .take(if in_main { usize::MAX } else { 0 }),
            &signed_in,
        );
        match resume {
            Some(resume) if in_main => {
                let (events, gap) = self.history_after(MAIN, resume);
                let event = head + &chat_welcome_end(events.into_iter(), gap);
                reply(out, id, event);
            }
            None if in_main => {
                let history = &self.room(MAIN).history;
                let tail = match &self.main_tail {
                    Some(tail) => tail.clone(),
                    None => Arc::from(welcome_tail(history)),
                };
                self.main_tail = Some(tail.clone());
                out.push(Output::Welcome { to: id, head, tail });
            }
            _ => reply(out, id, head + &chat_welcome_end(std::iter::empty(), false)),
        }
        for room in rooms.into_iter().filter(|r| *r != MAIN) {
            let event = self.joined(room, resume);
            reply(out, id, event);
        }
    }

    /// The `joined` event of `room`, with the history after `resume`.
    fn joined(&self, room: RoomId, resume: Option<&Resume>) -> String {
        let (events, gap) = match resume {
            Some(resume) => self.history_after(room, resume),
            None => (self.room(room).history.iter().collect(), false),
        };
        let chat_room = self.room(room);
        joined_event(
            &chat_room.name,
            chat_room.topic.as_deref(),
            self.users(room).into_iter(),
            events.into_iter(),
            gap,
        )
    }

    /// `room`'s messages after `resume`, or all of them and `true` if some
    /// it missed are no longer kept.
    fn history_after(&self, room: RoomId, resume: &Resume) -> (Vec<&str>, bool) {
        let history = &self.room(room).history;
        if self.room_gap(room, resume) {
            (history.iter().collect(), true)
        } else {
            history.after(resume.since)
        }
    }

    /// The members of `room` as events show them, by id; a signed-in
    /// user with several connections in it once.
    pub(super) fn users(&self, room: RoomId) -> Vec<UserRef<'_>> {
        let mut seen = BTreeSet::new();
        self.room(room)
            .members
            .iter()
            .filter(|id| match &self.clients[id].user {
                Some(sub) => seen.insert(sub.clone()),
                None => true,
            })
            .map(|id| self.user_ref(*id))
            .collect()
    }

    /// Puts client `id` in the room `name`, creating it if need be.
    fn enter(
        &mut self,
        id: ClientId,
        name: &RoomName,
        out: &mut Vec<Output>,
    ) -> Result<RoomId, Refusal> {
        let existing = self.room_id(name);
        if existing.is_some_and(|room| self.room(room).members.contains(&id)) {
            return Err((
                ErrorCode::AlreadyInRoom,
                "you are in that room already".into(),
            ));
        }
        self.may_enter(id, name)?;
        if self.clients[&id].rooms.len() >= self.limits.max_rooms_per_client {
            return Err((
                ErrorCode::TooManyRooms,
                "you are in as many rooms as one client may be".into(),
            ));
        }
        let room = match existing {
            Some(room) if self.room(room).members.len() >= self.limits.max_room_members => {
                return Err((
                    ErrorCode::RoomFull,
                    "that room has as many members as it may".into(),
                ));
            }
            Some(room) => room,
            None => self.create(name, out)?,
        };
        let first = self.room(room).members.is_empty() && room != MAIN;
        let principal = self.principal(id);
        let chat_room = self.room_mut(room);
        if first {
            // Whoever enters an empty room (`#main` aside) is its
            // operator until it is empty again.
            chat_room.operator = Some(principal);
        }
        chat_room.members.insert(id);
        if let Some(since) = chat_room.idle_since.take() {
            self.idle.remove(&(since, room));
        }
        self.clients
            .get_mut(&id)
            .expect("connected")
            .rooms
            .push(room);
        out.push(Output::Enter { id, room });
        Ok(room)
    }

    /// A new, empty room (not yet idle: its creator enters it at once).
    fn create(&mut self, name: &RoomName, out: &mut Vec<Output>) -> Result<RoomId, Refusal> {
        if self.by_name.len() >= self.limits.max_rooms && self.evict_idle(out).is_none() {
            return Err((
                ErrorCode::RoomLimit,
                "no room can be created now: the chat has as many rooms as it may, none of them empty".into(),
            ));
        }
        let mut history = History::new(self.limits.history);
        history.set_dropped_through(self.evicted_through);
        let id = self.slot();
        self.by_name.insert(name.clone(), id);
        out.push(Output::Record(
            room_record(name, None, history.dropped_through()).into(),
        ));
        self.rooms[id as usize] = Some(ChatRoom {
            name: name.clone(),
            members: BTreeSet::new(),
            history,
            topic: None,
            idle_since: None,
            operator: None, // set as the creator enters
            oplock: false,
        });
        log::debug!("room {name} created");
        Ok(id)
    }

    /// Evicts the empty room unused longest, if there is one.
    pub(super) fn evict_idle(&mut self, out: &mut Vec<Output>) -> Option<RoomId> {
        let (_, id) = self.idle.pop_first()?;
        let room = self.rooms[id as usize].take().expect("an idle room exists");
        self.by_name.remove(&room.name);
        self.free.push(id);
        self.history_bytes -= room.history.bytes();
        self.evicted_through = self.evicted_through.max(room.history.newest_id());
        out.push(Output::Record(gone_record(&room.name).into()));
        log::debug!("room {} evicted (empty, unused longest)", room.name);
        Some(id)
    }

    pub(super) fn mark_idle(&mut self, room: RoomId) {
        self.clock += 1;
        let since = self.clock;
        self.room_mut(room).idle_since = Some(since);
        self.idle.insert((since, room));
    }

    /// Takes client `id` out of `room`; the others hear a `leave`.
    pub(super) fn exit(&mut self, id: ClientId, room: RoomId, now: u64, out: &mut Vec<Output>) {
        let chat_room = self.room_mut(room);
        chat_room.members.remove(&id);
        let empty = chat_room.members.is_empty();
        if empty {
            // A room's operator is one until the room is empty.
            chat_room.operator = None;
        }
        out.push(Output::Exit { id, room });
        if !self.twin_in(id, room) {
            let event = room_presence_event("leave", &self.room(room).name, self.user_ref(id), now);
            out.push(to_room(room, event, Some(id)));
        }
        if empty && room != MAIN {
            self.mark_idle(room);
        }
    }

    /// `/join #room`.
    pub(super) fn join_command(
        &mut self,
        id: ClientId,
        wanted: &str,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(name) = RoomName::parse(wanted) else {
            return reply_error(out, id, ErrorCode::RoomInvalid, ROOM_INVALID_TEXT);
        };
        match self.enter(id, &name, out) {
            Err((code, text)) => reply(out, id, room_error_event(code, &text, &name)),
            Ok(room) => {
                let event = self.joined(room, None);
                reply(out, id, event);
                self.announce_join(id, room, now, out);
            }
        }
    }

    /// `/part [#room]`.
    pub(super) fn part(
        &mut self,
        id: ClientId,
        wanted: Option<&str>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(room) = self.member_room(id, wanted.unwrap_or(super::super::MAIN_ROOM), out)
        else {
            return;
        };
        self.clients
            .get_mut(&id)
            .expect("connected")
            .rooms
            .retain(|r| *r != room);
        reply(out, id, parted_event(&self.room(room).name));
        self.exit(id, room, now, out);
        if room == MAIN {
            self.main_tail = None;
        }
    }

    /// The room `wanted` names, if client `id` is in it; else the error
    /// is replied and `None`.
    pub(super) fn member_room(
        &self,
        id: ClientId,
        wanted: &str,
        out: &mut Vec<Output>,
    ) -> Option<RoomId> {
        let Some(name) = RoomName::parse(wanted) else {
            reply_error(out, id, ErrorCode::RoomInvalid, ROOM_INVALID_TEXT);
            return None;
        };
        match self.room_id(&name) {
            Some(room) if self.room(room).members.contains(&id) => Some(room),
            _ => {
                let text = format!("you are not in {name}");
                reply(
                    out,
                    id,
                    room_error_event(ErrorCode::NotInRoom, &text, &name),
                );
                None
            }
        }
    }

    /// A client that left: one `leave` per room it was in.
    pub(super) fn disconnect(&mut self, id: ClientId, now: u64, out: &mut Vec<Output>) {
        let Some(rooms) = self.clients.get(&id).map(|c| c.rooms.clone()) else {
            return;
        };
        for room in rooms {
            self.exit(id, room, now, out);
        }
        let client = self.clients.remove(&id).expect("connected");
        let key = nick_key(&client.nick);
        if self.nicks.get(&key) == Some(&id) {
            self.nicks.remove(&key);
        }
        if let Some(sub) = &client.user {
            self.sign_out(id, sub, &key);
        }
    }

    /// Keeps `event` in `room`'s history, within the budget all rooms
    /// share.
    pub(super) fn keep(&mut self, room: RoomId, event: Arc<str>, out: &mut Vec<Output>) {
        let history = &mut self.room_mut(room).history;
        let before = history.bytes();
        history.push(event);
        let after = history.bytes();
        self.history_bytes = self.history_bytes + after - before;
        if room == MAIN {
            self.main_tail = None;
        }
        self.trim_to_budget(room, out);
    }

    /// While the histories are over budget: the empty room unused longest
    /// is evicted; when none is left, `room`'s oldest messages go.
    pub(super) fn trim_to_budget(&mut self, room: RoomId, out: &mut Vec<Output>) {
        let mut through = None;
        while self.history_bytes > self.limits.room_history_bytes {
            // `room` itself is never idle here: it has the sender as a
            // member, or it is `#main`, which is never evicted.
            if self.evict_idle(out).is_some() {
                continue;
            }
            let Some(oldest) = self.room_mut(room).history.pop_oldest() else {
                break;
            };
            self.history_bytes -= oldest.len();
            through = super::super::message_id(&oldest).or(through);
        }
        if let Some(through) = through {
            if room == MAIN {
                self.main_tail = None;
            }
            let name = &self.room(room).name;
            out.push(Output::Record(trim_record(name, through).into()));
        }
    }
}

pub(super) fn to_room(room: RoomId, event: String, except: Option<ClientId>) -> Output {
    Output::ToRoom {
        room,
        mode: Mode::V1,
        payload: Payload::Text(event.into()),
        except,
    }
}

pub(super) fn reply(out: &mut Vec<Output>, to: ClientId, event: String) {
    out.push(Output::Reply { to, event });
}

pub(super) fn reply_error(out: &mut Vec<Output>, to: ClientId, code: ErrorCode, text: &str) {
    reply(out, to, super::super::error_event(code, text));
}

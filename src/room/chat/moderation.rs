//! Operators and what they can do: `/kick`, `/ban`, `/unban`, `/mute`,
//! `/oplock`. An operator is a signed-in user whose token says
//! `"role":"op"` (everywhere), or, for one room, whoever created it
//! (until it is empty). Every action is an event to the room and the
//! target, a log line (who, what, whom, why) and a metric.

use super::membership::{reply, reply_error};
use super::*;
use crate::json::push_string;
use std::fmt::Write;

/// A ban keeps its target out; a mute keeps it quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanctionKind {
    Ban,
    Mute,
}

impl SanctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SanctionKind::Ban => "ban",
            SanctionKind::Mute => "mute",
        }
    }
}

/// Whom a sanction holds: a signed-in user by `sub` (on every connection
/// and every later sign-in), or a guest by its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanctionTarget {
    User(Arc<str>),
    Address(IpAddr),
}

/// A ban or a mute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanction {
    pub kind: SanctionKind,
    pub target: SanctionTarget,
    /// The target's nickname when it was given (for `/unban NICK`).
    pub label: String,
    /// The room it holds in; `None`: the whole server.
    pub room: Option<RoomName>,
    /// When it ends (ms since the epoch); `None`: until lifted.
    pub until: Option<u64>,
}

impl Sanction {
    pub fn in_force(&self, now: u64) -> bool {
        self.until.is_none_or(|until| now < until)
    }

    /// Whether it holds in `room` (`None`: server-wide only).
    fn holds_in(&self, room: Option<&RoomName>) -> bool {
        match (&self.room, room) {
            (None, _) => true,
            (Some(mine), Some(room)) => mine == room,
            (Some(_), None) => false,
        }
    }

    /// `you are banned from #x until TS`, for an error text.
    pub(super) fn describe(&self, room: &RoomName) -> String {
        let verb = match self.kind {
            SanctionKind::Ban => "banned from",
            SanctionKind::Mute => "muted in",
        };
        let place = match &self.room {
            Some(_) => room.to_string(),
            None => "this server".to_string(),
        };
        match self.until {
            Some(until) => format!("you are {verb} {place} until {until}"),
            None => format!("you are {verb} {place}"),
        }
    }

    /// The 403 reason of a server-wide ban: `banned until TS` or `banned`.
    pub fn refusal(&self) -> String {
        match self.until {
            Some(until) => format!("banned until {until}"),
            None => "banned".to_string(),
        }
    }
}

impl Chat {
    /// Whether a visitor may connect at `now`: the reason of the 403 if a
    /// server-wide ban holds its `sub` or its address.
    pub fn admission(&self, visitor: &Visitor, now: u64) -> Result<(), String> {
        let sub = visitor.identity.as_ref().map(|i| i.sub.as_str());
        let ban = self.sanctions.iter().find(|s| {
            s.kind == SanctionKind::Ban
                && s.room.is_none()
                && s.in_force(now)
                && matches(&s.target, sub, visitor.address)
        });
        match ban {
            Some(ban) => Err(ban.refusal()),
            None => Ok(()),
        }
    }

    /// The sanction of `kind` holding client `id` in `room` now, if any.
    /// `now` is the newest time the chat was told (`self.now`).
    pub(super) fn sanction_on(
        &self,
        kind: SanctionKind,
        id: ClientId,
        room: Option<&RoomName>,
    ) -> Option<&Sanction> {
        let client = self.clients.get(&id)?;
        let sub = client.user.as_deref();
        self.sanctions.iter().find(|s| {
            s.kind == kind
                && s.holds_in(room)
                && s.in_force(self.now)
                && matches(&s.target, sub, client.address)
        })
    }

    /// Whether client `id` is an operator: everywhere with `"role":"op"`,
    /// in `room` as its room operator (see `ChatRoom::operator`).
    pub(super) fn is_operator(&self, id: ClientId, room: Option<RoomId>) -> bool {
        if self.signed_in_user(id).is_some_and(|user| user.op) {
            return true;
        }
        let Some(room) = room else {
            return false;
        };
        let me = self.principal(id);
        self.room(room).operator.as_ref() == Some(&me)
    }

    pub(super) fn principal(&self, id: ClientId) -> Principal {
        match &self.clients[&id].user {
            Some(sub) => Principal::User(sub.clone()),
            None => Principal::Guest(id),
        }
    }

    /// A message from client `id` in `room` (`None`: a direct message):
    /// the `muted` error if a mute holds it.
    pub(super) fn check_muted(
        &self,
        id: ClientId,
        room: Option<RoomId>,
        out: &mut Vec<Output>,
    ) -> bool {
        let name = room.map(|r| self.room(r).name.clone());
        let Some(mute) = self.sanction_on(SanctionKind::Mute, id, name.as_ref()) else {
            return false;
        };
        let text = mute.describe(name.as_ref().unwrap_or(&RoomName::main()));
        match self.clients[&id].mode {
            Mode::V1 => reply_error(out, id, ErrorCode::Muted, &text),
            // A raw client cannot be told: the log says what was refused.
            Mode::Raw => log::info!("({id}) raw line refused: {text}"),
        }
        true
    }

    /// `/kick`, `/ban`, `/unban`, `/mute`, `/oplock` from client `id`.
    pub(super) fn moderate(
        &mut self,
        id: ClientId,
        command: Moderation<'_>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let room = match command.room.map(RoomName::parse) {
            None => None,
            Some(None) => return reply_error(out, id, ErrorCode::RoomInvalid, ROOM_INVALID_TEXT),
            Some(Some(name)) => Some(name),
        };
        let room_id = room.as_ref().and_then(|name| self.room_id(name));
        if let (Some(name), None) = (&room, room_id)
            && command.action != ModAction::Unban
        {
            let text = format!("{name} does not exist");
            return reply(out, id, room_error_event(ErrorCode::NotInRoom, &text, name));
        }
        if !self.is_operator(id, room_id) {
            let text = match &room {
                Some(name) => format!("only an operator of {name} may do that"),
                None => "only an operator may do that without naming a room".to_string(),
            };
            return reply_error(out, id, ErrorCode::NotAllowed, &text);
        }
        match command.action {
            ModAction::Oplock => self.oplock(id, room_id, command.on, now, out),
            ModAction::Unban => self.unban(id, command.target, room, now, out),
            action => {
                let Some(target) = self.find_nick(command.target) else {
                    let text = format!("nobody is called {}", excerpt(command.target));
                    return reply_error(out, id, ErrorCode::NoSuchUser, &text);
                };
                if self.signed_in_user(target).is_some_and(|user| user.op) {
                    let text = "an operator cannot be kicked, banned or muted";
                    return reply_error(out, id, ErrorCode::NotAllowed, text);
                }
                if self.principal(target) == self.principal(id) {
                    let text = "an operator cannot kick, ban or mute itself";
                    return reply_error(out, id, ErrorCode::Usage, text);
                }
                self.sanction(id, target, action, room_id, &command, now, out);
            }
        }
    }

    /// `/kick`, `/ban` and `/mute` of a connected `target`.
    #[allow(clippy::too_many_arguments)]
    fn sanction(
        &mut self,
        id: ClientId,
        target: ClientId,
        action: ModAction,
        room: Option<RoomId>,
        command: &Moderation<'_>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let until = command.duration.map(|ms| now.saturating_add(ms));
        let kind = match action {
            ModAction::Ban => Some(SanctionKind::Ban),
            ModAction::Mute => Some(SanctionKind::Mute),
            _ => None,
        };
        if let Some(kind) = kind {
            let client = &self.clients[&target];
            let held = match (&client.user, client.address) {
                (Some(sub), _) => SanctionTarget::User(sub.clone()),
                (None, Some(address)) => SanctionTarget::Address(address),
                (None, None) => {
                    let text =
                        "that guest's address is not known: it can be kicked, not banned or muted";
                    return reply_error(out, id, ErrorCode::Usage, text);
                }
            };
            let sanction = Sanction {
                kind,
                target: held,
                label: client.nick.clone(),
                room: room.map(|r| self.room(r).name.clone()),
                until,
            };
            out.push(Output::Record(sanction_record(&sanction).into()));
            self.sanctions.retain(|s| s.in_force(now));
            self.sanctions.push(sanction);
        }
        let verb = action.as_str();
        let room_name = room.map(|r| self.room(r).name.clone());
        let event = moderation_event(
            verb,
            room_name.as_ref(),
            self.user_ref(target),
            self.user_ref(id),
            command.reason,
            until,
            now,
        );
        let place = room_name
            .as_ref()
            .map_or("server-wide".to_string(), |r| format!("in {r}"));
        let end = match (action, until) {
            (ModAction::Kick, _) => String::new(),
            (_, Some(until)) => format!(" until {until}"),
            (_, None) => " until lifted".to_string(),
        };
        // Who, what, whom, why: nicknames and the reason escaped.
        log::info!(
            "Moderation: ({id}) {} {verb}s ({target}) {} {place}{end}: {}",
            self.clients[&id].nick.escape_debug(),
            self.clients[&target].nick.escape_debug(),
            command
                .reason
                .map_or("no reason given".to_string(), |r| format!("{r:?}")),
        );
        out.push(Output::Moderated { action: verb });
        let targets = self.connections_of(target);
        self.tell(id, &targets, room, &event, out);
        match (action, room) {
            (ModAction::Mute, _) => {}
            (_, Some(room)) => {
                for conn in targets {
                    if self.room(room).members.contains(&conn) {
                        self.clients
                            .get_mut(&conn)
                            .expect("connected")
                            .rooms
                            .retain(|r| *r != room);
                        reply(out, conn, parted_event(&self.room(room).name));
                        self.exit(conn, room, now, out);
                    }
                }
                if room == MAIN {
                    self.main_tail = None;
                }
            }
            (_, None) => {
                let banned = action == ModAction::Ban;
                for conn in targets {
                    out.push(Output::Removed { to: conn, banned });
                    self.disconnect(conn, now, out);
                }
            }
        }
    }

    /// Sends a moderation `event` once to each of: the members of `room`
    /// (or, server-wide, of every room the target is in), the target's
    /// connections, and the operator.
    fn tell(
        &self,
        by: ClientId,
        targets: &[ClientId],
        room: Option<RoomId>,
        event: &str,
        out: &mut Vec<Output>,
    ) {
        let mut to: BTreeSet<ClientId> = targets.iter().copied().collect();
        to.insert(by);
        let rooms: Vec<RoomId> = match room {
            Some(room) => vec![room],
            None => targets
                .iter()
                .flat_map(|t| self.clients[t].rooms.iter().copied())
                .collect(),
        };
        for room in rooms {
            to.extend(self.room(room).members.iter().copied());
        }
        for conn in to {
            if self.clients[&conn].mode == Mode::V1 {
                reply(out, conn, event.to_string());
            }
        }
    }

    /// `/unban NICK|ADDRESS [#room]`: lifts the bans that name it.
    fn unban(
        &mut self,
        id: ClientId,
        target: &str,
        room: Option<RoomName>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let address: Option<IpAddr> = target.parse().ok();
        let key = nick_key(target);
        let owner = self.owners.get(&key).cloned();
        let connected = self.find_nick(target);
        let connected_as = connected.map(|c| {
            let client = &self.clients[&c];
            (client.user.clone(), client.address)
        });
        let lifted: Vec<Sanction> = self
            .sanctions
            .iter()
            .filter(|s| s.kind == SanctionKind::Ban && s.room == room)
            .filter(|s| match &s.target {
                SanctionTarget::Address(a) => {
                    address == Some(*a)
                        || nick_key(&s.label) == key
                        || connected_as.as_ref().is_some_and(|(_, c)| *c == Some(*a))
                }
                SanctionTarget::User(sub) => {
                    owner.as_ref() == Some(sub)
                        || nick_key(&s.label) == key
                        || connected_as
                            .as_ref()
                            .is_some_and(|(u, _)| u.as_ref() == Some(sub))
                }
            })
            .cloned()
            .collect();
        if lifted.is_empty() {
            let text = format!("no ban names {}", excerpt(target));
            return reply_error(out, id, ErrorCode::NoSuchUser, &text);
        }
        self.sanctions.retain(|s| !lifted.contains(s));
        for sanction in &lifted {
            out.push(Output::Record(lift_record(sanction).into()));
        }
        let label = lifted[0].label.clone();
        let target_ref = match connected {
            Some(c) => self.user_ref(c),
            // Not connected: id 0 says so.
            None => (0, label.as_str()).into(),
        };
        let event = moderation_event(
            "unban",
            room.as_ref(),
            target_ref,
            self.user_ref(id),
            None,
            None,
            now,
        );
        log::info!(
            "Moderation: ({id}) {} unbans {} in {}",
            self.clients[&id].nick.escape_debug(),
            label.escape_debug(),
            room.as_ref()
                .map_or("the server".to_string(), |r| r.to_string()),
        );
        out.push(Output::Moderated { action: "unban" });
        let targets: Vec<ClientId> = connected
            .map(|c| self.connections_of(c))
            .unwrap_or_default();
        let room_id = room.as_ref().and_then(|r| self.room_id(r));
        match room_id {
            Some(room_id) => self.tell(id, &targets, Some(room_id), &event, out),
            None if room.is_some() => self.tell(id, &targets, None, &event, out),
            None => self.tell(id, &targets, Some(MAIN), &event, out),
        }
    }

    /// `/oplock #room on|off`: whether only operators may set the topic.
    fn oplock(
        &mut self,
        id: ClientId,
        room: Option<RoomId>,
        on: bool,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(room) = room else {
            return reply_error(out, id, ErrorCode::Usage, "usage: /oplock #room on|off");
        };
        let chat_room = self.room_mut(room);
        chat_room.oplock = on;
        let name = chat_room.name.clone();
        out.push(Output::Record(oplock_record(&name, on).into()));
        let state = if on { "on" } else { "off" };
        log::info!(
            "Moderation: ({id}) {} sets oplock {state} in {name}",
            self.clients[&id].nick.escape_debug()
        );
        out.push(Output::Moderated { action: "oplock" });
        let mut event = format!("{{\"type\":\"oplock\",\"room\":\"{name}\",\"on\":{on},\"by\":");
        super::super::events::push_user_ref(&mut event, self.user_ref(id));
        let _ = write!(event, ",\"ts\":{now}}}");
        out.push(super::membership::to_room(room, event, None));
    }
}

/// Whether a sanction's target is this `sub`, or this address for a
/// guest. An address sanction holds guests only: a signed-in user is
/// known by its `sub`, and others behind the same address (a NAT, an
/// office) who signed in are not held with the guest.
fn matches(target: &SanctionTarget, sub: Option<&str>, address: Option<IpAddr>) -> bool {
    match target {
        SanctionTarget::User(held) => sub == Some(&**held),
        SanctionTarget::Address(held) => sub.is_none() && address == Some(*held),
    }
}

/// `{"type":"moderation","action":..,"room":..,"target":{..},"by":{..},
/// "reason":..,"until":..,"ts":..}`
pub fn moderation_event(
    action: &str,
    room: Option<&RoomName>,
    target: UserRef<'_>,
    by: UserRef<'_>,
    reason: Option<&str>,
    until: Option<u64>,
    ts: u64,
) -> String {
    let mut out = format!("{{\"type\":\"moderation\",\"action\":\"{action}\",\"room\":");
    match room {
        Some(room) => {
            let _ = write!(out, "\"{room}\"");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"target\":");
    super::super::events::push_user_ref(&mut out, target);
    out.push_str(",\"by\":");
    super::super::events::push_user_ref(&mut out, by);
    out.push_str(",\"reason\":");
    match reason {
        Some(reason) => push_string(&mut out, reason),
        None => out.push_str("null"),
    }
    match until {
        Some(until) => {
            let _ = write!(out, ",\"until\":{until}");
        }
        None => out.push_str(",\"until\":null"),
    }
    let _ = write!(out, ",\"ts\":{ts}}}");
    out
}

fn push_target(out: &mut String, target: &SanctionTarget) {
    match target {
        SanctionTarget::User(sub) => {
            out.push_str("{\"sub\":");
            push_string(out, sub);
        }
        SanctionTarget::Address(address) => {
            let _ = write!(out, "{{\"address\":\"{address}\"");
        }
    }
    out.push('}');
}

fn push_room(out: &mut String, room: Option<&RoomName>) {
    match room {
        Some(room) => {
            let _ = write!(out, "\"{room}\"");
        }
        None => out.push_str("null"),
    }
}

/// The history file's record of a ban or mute given.
pub fn sanction_record(s: &Sanction) -> String {
    let mut out = format!(
        "{{\"type\":\"sanction\",\"kind\":\"{}\",\"target\":",
        s.kind.as_str()
    );
    push_target(&mut out, &s.target);
    out.push_str(",\"label\":");
    push_string(&mut out, &s.label);
    out.push_str(",\"room\":");
    push_room(&mut out, s.room.as_ref());
    match s.until {
        Some(until) => {
            let _ = write!(out, ",\"until\":{until}}}");
        }
        None => out.push_str(",\"until\":null}"),
    }
    out
}

/// The history file's record of a ban lifted.
pub fn lift_record(s: &Sanction) -> String {
    let mut out = format!(
        "{{\"type\":\"lift\",\"kind\":\"{}\",\"target\":",
        s.kind.as_str()
    );
    push_target(&mut out, &s.target);
    out.push_str(",\"room\":");
    push_room(&mut out, s.room.as_ref());
    out.push('}');
    out
}

/// The history file's record of a room's `/oplock`.
pub fn oplock_record(room: &RoomName, on: bool) -> String {
    format!("{{\"type\":\"oplock\",\"room\":\"{room}\",\"on\":{on}}}")
}

/// The history file's record of a name owned by a signed-in user.
pub fn owner_record(name: &str, sub: &str) -> String {
    let mut out = String::from("{\"type\":\"owner\",\"name\":");
    push_string(&mut out, &nick_key(name));
    out.push_str(",\"sub\":");
    push_string(&mut out, sub);
    out.push('}');
    out
}

/// The history file's record of a room some token named private.
pub fn private_record(room: &RoomName) -> String {
    format!("{{\"type\":\"private\",\"room\":\"{room}\"}}")
}

/// The history file's record of a direct message kept for a pair.
pub fn direct_record(a: &str, b: &str, event: &str) -> String {
    let mut out = String::from("{\"type\":\"dm\",\"pair\":[");
    push_string(&mut out, a);
    out.push(',');
    push_string(&mut out, b);
    out.push_str("],\"event\":");
    out.push_str(event);
    out.push('}');
    out
}
